package io.github.validatorfencing.besu;

import java.util.function.Supplier;
import org.hyperledger.besu.plugin.BesuPlugin;
import org.hyperledger.besu.plugin.ServiceManager;
import org.hyperledger.besu.plugin.services.PicoCLIOptions;
import org.hyperledger.besu.plugin.services.SecurityModuleService;
import org.hyperledger.besu.plugin.services.securitymodule.SecurityModule;

/**
 * Registers the security module {@value #NAME}: Besu started with {@code --security-module=fence}
 * signs every hash through the fence sidecar's {@code POST /v1/sign/digest} (the epoch fence: the
 * sidecar must hold the validator's lease, confirmed in etcd in strict mode) and keeps only ECDH
 * (RLPx handshakes) in the process, with the node key file the fence gate releases.
 *
 * <p>See docs/besu-plugin.md for what this guarantees and what it does not.
 */
public final class FencePlugin implements BesuPlugin {
  /** The security module's name and the options' namespace ({@code --plugin-fence-...}). */
  public static final String NAME = "fence";

  private final FenceOptions options = new FenceOptions();

  @Override
  public String getName() {
    return NAME;
  }

  @Override
  public void register(final ServiceManager context) {
    context
        .getService(PicoCLIOptions.class)
        .orElseThrow(() -> new IllegalStateException("Besu offers no PicoCLIOptions service"))
        .addPicoCLIOptions(NAME, options);
    context
        .getService(SecurityModuleService.class)
        .orElseThrow(() -> new IllegalStateException("Besu offers no SecurityModuleService"))
        .register(NAME, memoize(() -> new FenceSecurityModule(options)));
  }

  @Override
  public void start() {}

  @Override
  public void stop() {}

  /**
   * Besu asks the supplier when it builds the node key; the module checks the sidecar once, so a
   * second request gets the same module.
   */
  private static Supplier<SecurityModule> memoize(final Supplier<SecurityModule> s) {
    return new Supplier<>() {
      private SecurityModule module;

      @Override
      public synchronized SecurityModule get() {
        if (module == null) {
          module = s.get();
        }
        return module;
      }
    };
  }
}
