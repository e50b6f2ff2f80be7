package io.github.validatorfencing.besu.harness;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.math.BigInteger;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.spec.ECPoint;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.ServiceLoader;
import java.util.function.Supplier;
import org.apache.tuweni.bytes.Bytes32;
import org.hyperledger.besu.plugin.BesuPlugin;
import org.hyperledger.besu.plugin.ServiceManager;
import org.hyperledger.besu.plugin.services.BesuService;
import org.hyperledger.besu.plugin.services.PicoCLIOptions;
import org.hyperledger.besu.plugin.services.SecurityModuleService;
import org.hyperledger.besu.plugin.services.securitymodule.SecurityModule;
import org.hyperledger.besu.plugin.services.securitymodule.SecurityModuleException;
import org.hyperledger.besu.plugin.services.securitymodule.data.Signature;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

/**
 * Stands in for Besu 26.2.0 around the fence plugin, as far as the plugin can see it, so that the
 * plugin's jar is exercised the way Besu loads and calls it (it is NOT Besu: no consensus, no
 * networking):
 *
 * <ul>
 *   <li>loading: a URLClassLoader over the plugin jar and ServiceLoader of BesuPlugin, as
 *       BesuPluginContextImpl.detectPlugins;
 *   <li>options: PicoCLIOptions adds the plugin's annotated object as a picocli mixin after
 *       checking the {@code --plugin-<namespace>-} prefix, as PicoCLIOptionsImpl; then the command
 *       line is parsed;
 *   <li>the module: SecurityModuleService by name, then {@code supplier.get()}, as
 *       BesuCommand.securityModule() for {@code --security-module=fence}.
 * </ul>
 *
 * <p>Usage: {@code Harness --plugin-jar JAR [Besu-style plugin options...]}; then one command a line
 * on stdin, one answer a line on stdout:
 *
 * <pre>
 *   (startup)            ready PUBKEY128HEX | startup-refused MESSAGE
 *   sign DIGEST64HEX     signed R64HEX S64HEX | refused MESSAGE
 *   ecdh PUBKEY128HEX    agreed X64HEX | refused MESSAGE
 * </pre>
 *
 * Any exception other than SecurityModuleException from the module answers {@code crash ...}:
 * Besu's rounds catch only SecurityModuleException.
 *
 * <p>{@code Harness --json JAR} instead reads hex lines and answers {@code json-ok}, {@code
 * json-refused MESSAGE} or {@code crash ...} for the plugin's JSON reader (Json.parse) on those
 * bytes as UTF-8: the fuzz target's view of the parser that reads the sidecar's answers.
 */
public final class Harness {
  private Harness() {}

  public static void main(final String[] args) throws Exception {
    final PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    if (args.length == 2 && args[0].equals("--json")) {
      json(args[1], out);
      return;
    }
    if (args.length < 2 || !args[0].equals("--plugin-jar")) {
      System.err.println("usage: Harness --plugin-jar JAR [plugin options...]");
      System.exit(2);
    }
    final URLClassLoader loader =
        new URLClassLoader(new URL[] {Path.of(args[1]).toUri().toURL()}, Harness.class.getClassLoader());
    final List<BesuPlugin> plugins =
        ServiceLoader.load(BesuPlugin.class, loader).stream().map(ServiceLoader.Provider::get).toList();
    if (plugins.size() != 1) {
      System.err.println("the jar registers " + plugins.size() + " BesuPlugin services, want 1");
      System.exit(2);
    }
    final BesuPlugin plugin = plugins.get(0);

    final CommandSpec besu = CommandSpec.create();
    final Services services = new Services(besu);
    plugin.register(services);
    try {
      new CommandLine(besu).parseArgs(Arrays.copyOfRange(args, 2, args.length));
    } catch (final CommandLine.ParameterException e) {
      System.err.println("bad options: " + e.getMessage());
      System.exit(2);
    }
    plugin.start();

    final SecurityModule module;
    try {
      module = services.modules.get(plugin.getName()).get();
    } catch (final SecurityModuleException e) {
      out.println("startup-refused " + oneLine(e.getMessage()));
      plugin.stop();
      System.exit(3);
      return;
    }
    final ECPoint w = module.getPublicKey().getW();
    out.println("ready " + hex32(w.getAffineX()) + hex32(w.getAffineY()));

    final BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line; (line = in.readLine()) != null; ) {
      final String[] f = line.trim().split(" ");
      try {
        switch (f[0]) {
          case "sign" -> {
            final Signature s = module.sign(Bytes32.wrap(unhex(f, 32)));
            out.println("signed " + hex32(s.getR()) + " " + hex32(s.getS()));
          }
          case "ecdh" -> {
            final byte[] p = unhex(f, 64);
            final ECPoint party =
                new ECPoint(new BigInteger(1, p, 0, 32), new BigInteger(1, p, 32, 32));
            final Bytes32 agreed = module.calculateECDHKeyAgreement(() -> party);
            out.println("agreed " + java.util.HexFormat.of().formatHex(agreed.toArray()));
          }
          default -> out.println("error unknown command " + f[0]);
        }
      } catch (final SecurityModuleException e) {
        out.println("refused " + oneLine(e.getMessage()));
      } catch (final BadInput e) {
        out.println("error " + oneLine(e.getMessage()));
      } catch (final RuntimeException e) {
        out.println("crash " + oneLine(e.toString()));
      }
    }
    plugin.stop();
  }

  /** Answers each hex line with what Json.parse (package-private in the plugin) makes of it. */
  private static void json(final String jar, final PrintStream out) throws Exception {
    final URLClassLoader loader =
        new URLClassLoader(new URL[] {Path.of(jar).toUri().toURL()}, Harness.class.getClassLoader());
    final java.lang.reflect.Method parse =
        loader.loadClass("io.github.validatorfencing.besu.Json").getDeclaredMethod("parse", String.class);
    parse.setAccessible(true);
    final BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line; (line = in.readLine()) != null; ) {
      final String text = new String(java.util.HexFormat.of().parseHex(line.trim()), StandardCharsets.UTF_8);
      try {
        parse.invoke(null, text);
        out.println("json-ok");
      } catch (final java.lang.reflect.InvocationTargetException e) {
        if (e.getCause() instanceof IllegalArgumentException) {
          out.println("json-refused " + oneLine(e.getCause().getMessage()));
        } else {
          out.println("crash " + oneLine(String.valueOf(e.getCause())));
        }
      }
    }
  }

  /** Besu's services as far as the plugin uses them. */
  private static final class Services implements ServiceManager {
    final Map<String, Supplier<SecurityModule>> modules = new HashMap<>();
    private final Map<Class<?>, BesuService> services = new HashMap<>();

    Services(final CommandSpec besu) {
      services.put(
          SecurityModuleService.class,
          new SecurityModuleService() {
            @Override
            public void register(final String name, final Supplier<SecurityModule> supplier) {
              modules.put(name, supplier);
            }

            @Override
            public Optional<Supplier<SecurityModule>> getByName(final String name) {
              return Optional.ofNullable(modules.get(name));
            }
          });
      services.put(
          PicoCLIOptions.class,
          (PicoCLIOptions)
              (namespace, options) -> {
                final CommandSpec mixin = CommandSpec.forAnnotatedObject(options);
                for (final OptionSpec o : mixin.options()) {
                  for (final String name : o.names()) {
                    if (!name.startsWith("--plugin-" + namespace + "-")
                        && !name.startsWith("--Xplugin-" + namespace + "-")) {
                      throw new RuntimeException(
                          "plugin option " + name + " lacks the prefix --plugin-" + namespace + "-");
                    }
                  }
                }
                besu.addMixin("Plugin " + namespace, mixin);
              });
    }

    @Override
    public <T extends BesuService> void addService(final Class<T> type, final T service) {
      services.put(type, service);
    }

    @Override
    public <T extends BesuService> Optional<T> getService(final Class<T> type) {
      return Optional.ofNullable(type.cast(services.get(type)));
    }
  }

  private static String oneLine(final String s) {
    return String.valueOf(s).replace('\n', ' ').replace('\r', ' ');
  }

  private static String hex32(final BigInteger v) {
    final String h = v.toString(16);
    return "0".repeat(64 - h.length()) + h;
  }

  /** A command line the harness cannot read: the caller's mistake, not the plugin's. */
  private static final class BadInput extends RuntimeException {
    private static final long serialVersionUID = 1L;

    BadInput(final String message) {
      super(message);
    }
  }

  private static byte[] unhex(final String[] f, final int len) {
    if (f.length != 2) {
      throw new BadInput("want one argument of " + len + " hex bytes");
    }
    try {
      final byte[] b = java.util.HexFormat.of().parseHex(f[1]);
      if (b.length == len) {
        return b;
      }
    } catch (final IllegalArgumentException e) {
      throw new BadInput("not hex: " + e.getMessage());
    }
    throw new BadInput("want " + len + " bytes");
  }
}
