package io.github.validatorfencing.besu;

import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Option;

/**
 * The plugin's Besu options. Besu also reads them from its TOML config file and from the
 * environment ({@code BESU_PLUGIN_FENCE_SIDECAR_URL}, ...).
 */
public final class FenceOptions {
  static final int MIN_TIMEOUT_MS = 100;
  static final int MAX_TIMEOUT_MS = 60_000;

  @Option(
      names = "--plugin-fence-sidecar-url",
      paramLabel = "<URL>",
      description = "fence-sidecar's signing address, started with --bare-digest (default: ${DEFAULT-VALUE})")
  String sidecarUrl = "http://127.0.0.1:7700";

  @Option(
      names = "--plugin-fence-key-file",
      paramLabel = "<PATH>",
      description =
          "the node key file the fence gate releases (hex private key, as Besu's key file); used"
              + " only for ECDH in RLPx handshakes and the public key, never to sign (required)")
  Path keyFile;

  @Option(
      names = "--plugin-fence-request-timeout-ms",
      paramLabel = "<MS>",
      description =
          "bound on each signature request; keep it well below the BFT round timeout, since Besu"
              + " waits for the signature on its consensus thread (default: ${DEFAULT-VALUE})")
  int requestTimeoutMillis = 2000;

  /** Options as a harness or test sets them; Besu uses the no-argument constructor. */
  FenceOptions(final String sidecarUrl, final Path keyFile, final int requestTimeoutMillis) {
    this.sidecarUrl = sidecarUrl;
    this.keyFile = keyFile;
    this.requestTimeoutMillis = requestTimeoutMillis;
  }

  /** Besu's PicoCLI fills the fields. */
  public FenceOptions() {}

  /**
   * Checks every option and reports every problem at once, in words an operator can act on.
   *
   * @return the sidecar's base URI
   * @throws IllegalArgumentException naming each problem
   */
  URI validate() {
    final List<String> problems = new ArrayList<>();
    URI uri = null;
    try {
      uri = new URI(sidecarUrl == null ? "" : sidecarUrl);
      if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme())
          || uri.getHost() == null
          || uri.getPort() < 0
          || uri.getUserInfo() != null
          || uri.getFragment() != null
          || !(uri.getPath() == null || uri.getPath().isEmpty() || uri.getPath().equals("/"))
          || uri.getQuery() != null) {
        problems.add(
            "--plugin-fence-sidecar-url " + sidecarUrl + " must be http://HOST:PORT, e.g. http://127.0.0.1:7700");
        uri = null;
      }
    } catch (final URISyntaxException e) {
      problems.add(
          "--plugin-fence-sidecar-url " + sidecarUrl + " is not a URL: " + e.getReason());
    }
    if (keyFile == null) {
      problems.add(
          "--plugin-fence-key-file is required: the node key file the fence gate releases (ECDH only)");
    }
    if (requestTimeoutMillis < MIN_TIMEOUT_MS || requestTimeoutMillis > MAX_TIMEOUT_MS) {
      problems.add(
          "--plugin-fence-request-timeout-ms ("
              + requestTimeoutMillis
              + ") must be between "
              + MIN_TIMEOUT_MS
              + " and "
              + MAX_TIMEOUT_MS);
    }
    if (!problems.isEmpty()) {
      throw new IllegalArgumentException(String.join("; ", problems));
    }
    return URI.create(uri.getScheme() + "://" + uri.getRawAuthority());
  }
}
