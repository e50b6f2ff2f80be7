package io.github.validatorfencing.besu;

import java.io.IOException;
import java.io.InputStream;
import java.math.BigInteger;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/**
 * fence-sidecar's HTTP API as the plugin uses it: {@code GET /api/v1/eth1/publicKeys} and {@code
 * POST /v1/sign/digest}. Every failure is a {@link SidecarException}.
 */
final class SidecarClient {
  private static final int MAX_BODY = 64 * 1024;

  private final URI base;
  private final Duration timeout;
  private final HttpClient http;

  SidecarClient(final URI base, final Duration timeout) {
    this.base = base;
    this.timeout = timeout;
    this.http =
        HttpClient.newBuilder()
            .version(HttpClient.Version.HTTP_1_1) // the sidecar speaks plain HTTP/1.1 on localhost
            .connectTimeout(timeout)
            .followRedirects(HttpClient.Redirect.NEVER)
            .build();
  }

  /** A signature from the sidecar: R‖S‖V (V 0 or 1) and the epoch it was made under. */
  record Signed(byte[] signature, long epoch) {}

  /**
   * A refusal or failure. The message starts with the sidecar's code word (fenced, stale_epoch,
   * journal, forbidden, ...) when the sidecar answered one, else with unreachable or bad_answer.
   */
  static final class SidecarException extends Exception {
    private static final long serialVersionUID = 1L;

    SidecarException(final String message) {
      super(message);
    }
  }

  /** The sidecar's keys as 128 lower-case hex digits each (X‖Y, no 04, no 0x). */
  List<String> publicKeys() throws SidecarException, InterruptedException {
    final Object v = call(HttpRequest.newBuilder(base.resolve("/api/v1/eth1/publicKeys")).GET());
    final List<String> out = new ArrayList<>();
    if (v instanceof List<?> l) {
      for (final Object k : l) {
        if (!(k instanceof String str)) {
          throw badAnswer("publicKeys lists a non-string");
        }
        out.add(strip0x(str).toLowerCase(java.util.Locale.ROOT));
      }
      return out;
    }
    throw badAnswer("publicKeys is not a JSON array");
  }

  /** Asks the sidecar to sign digest for validator under the epoch fence. */
  Signed signDigest(final String validator, final byte[] digest)
      throws SidecarException, InterruptedException {
    final String body =
        "{\"validator\":\"" + validator + "\",\"digest\":\"0x" + HexFormat.of().formatHex(digest) + "\"}";
    final Object v =
        call(
            HttpRequest.newBuilder(base.resolve("/v1/sign/digest"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8)));
    if (!(v instanceof Map<?, ?> m)
        || !(m.get("signature") instanceof String sig)
        || !(m.get("epoch") instanceof BigInteger epoch)
        || m.size() != 2) {
      throw badAnswer("the answer to POST /v1/sign/digest is not {\"signature\",\"epoch\"}");
    }
    final byte[] raw;
    try {
      raw = HexFormat.of().parseHex(strip0x(sig));
    } catch (final IllegalArgumentException e) {
      throw badAnswer("the signature is not hex");
    }
    if (raw.length != 65 || (raw[64] != 0 && raw[64] != 1)) {
      throw badAnswer("the signature is not 65 bytes R‖S‖V with V 0 or 1");
    }
    if (epoch.signum() <= 0 || epoch.bitLength() > 63) {
      throw badAnswer("the epoch " + epoch + " is not a positive 64-bit number");
    }
    return new Signed(raw, epoch.longValueExact());
  }

  /** Sends one request; a 2xx answer's JSON, else the sidecar's code word and message. */
  private Object call(final HttpRequest.Builder rb) throws SidecarException, InterruptedException {
    final HttpRequest req = rb.timeout(timeout).build();
    final HttpResponse<InputStream> res;
    final String text;
    try {
      res = http.send(req, HttpResponse.BodyHandlers.ofInputStream());
      try (InputStream in = res.body()) {
        final byte[] b = in.readNBytes(MAX_BODY + 1);
        if (b.length > MAX_BODY) {
          throw badAnswer(req.method() + " " + req.uri().getPath() + " answered more than 64 KiB");
        }
        text = new String(b, StandardCharsets.UTF_8);
      }
    } catch (final HttpTimeoutException e) {
      throw new SidecarException(
          "unreachable: no answer from fence-sidecar at " + base + " within " + timeout.toMillis() + "ms");
    } catch (final IOException e) {
      throw new SidecarException(
          "unreachable: fence-sidecar at "
              + base
              + " is unreachable ("
              + e.getClass().getSimpleName()
              + (e.getMessage() == null ? "" : ": " + e.getMessage())
              + ")");
    }
    final Object v;
    try {
      v = Json.parse(text);
    } catch (final IllegalArgumentException e) {
      throw badAnswer(req.method() + " " + req.uri().getPath() + " answered HTTP " + res.statusCode() + " with " + e.getMessage());
    }
    if (res.statusCode() / 100 == 2) {
      return v;
    }
    if (v instanceof Map<?, ?> m && m.get("code") instanceof String code) {
      final Object msg = m.get("message");
      throw new SidecarException(code + ": " + (msg instanceof String s ? s : "(no message)"));
    }
    throw badAnswer(req.method() + " " + req.uri().getPath() + " answered HTTP " + res.statusCode() + " without a code word");
  }

  private SidecarException badAnswer(final String what) {
    return new SidecarException("bad_answer: fence-sidecar at " + base + ": " + what);
  }

  private static String strip0x(final String s) {
    return s.startsWith("0x") || s.startsWith("0X") ? s.substring(2) : s;
  }
}
