package io.github.validatorfencing.besu;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.spec.ECPoint;
import java.util.Arrays;
import java.util.HexFormat;
import org.bouncycastle.asn1.x9.X9ECParameters;
import org.bouncycastle.crypto.agreement.ECDHBasicAgreement;
import org.bouncycastle.crypto.digests.KeccakDigest;
import org.bouncycastle.crypto.ec.CustomNamedCurves;
import org.bouncycastle.crypto.params.ECDomainParameters;
import org.bouncycastle.crypto.params.ECPrivateKeyParameters;
import org.bouncycastle.crypto.params.ECPublicKeyParameters;
import org.bouncycastle.math.ec.FixedPointCombMultiplier;

/**
 * The node key, held for ECDH alone: RLPx handshakes need the static key's agreement with the
 * peer's key, and no signing API can give that. Nothing here signs. BouncyCastle is Besu's own
 * (Besu 26.2.0 ships bcprov 1.83); the agreement is computed as Besu's {@code
 * AbstractSECP256.calculateECDHKeyAgreement} does it (ECDHBasicAgreement, x as 32 bytes).
 */
final class EcdhKey {
  private static final X9ECParameters CURVE = CustomNamedCurves.getByName("secp256k1");
  private static final ECDomainParameters DOMAIN =
      new ECDomainParameters(CURVE.getCurve(), CURVE.getG(), CURVE.getN(), CURVE.getH());

  private final ECPrivateKeyParameters privateKey;
  private final ECPoint publicPoint;
  private final byte[] publicKey; // 64 bytes X‖Y

  private EcdhKey(final BigInteger d) {
    this.privateKey = new ECPrivateKeyParameters(d, DOMAIN);
    final org.bouncycastle.math.ec.ECPoint q =
        new FixedPointCombMultiplier().multiply(DOMAIN.getG(), d).normalize();
    final BigInteger x = q.getAffineXCoord().toBigInteger();
    final BigInteger y = q.getAffineYCoord().toBigInteger();
    this.publicPoint = new ECPoint(x, y);
    this.publicKey = new byte[64];
    put32(x, publicKey, 0);
    put32(y, publicKey, 32);
  }

  /**
   * Reads a key file in Besu's format: the first line is the private key as 64 hex digits, with or
   * without 0x. Messages name the file, never its content.
   */
  static EcdhKey load(final Path file) {
    final String line;
    try {
      line = Files.readAllLines(file, StandardCharsets.US_ASCII).stream().findFirst().orElse("").trim();
    } catch (final IOException | RuntimeException e) {
      throw new IllegalArgumentException("cannot read the node key file " + file + ": " + e.getMessage());
    }
    final String hex = line.startsWith("0x") || line.startsWith("0X") ? line.substring(2) : line;
    if (hex.length() != 64 || !hex.chars().allMatch(c -> Character.digit(c, 16) >= 0)) {
      throw new IllegalArgumentException(
          "the node key file " + file + " must hold the private key as 64 hex digits on its first line");
    }
    final BigInteger d = new BigInteger(hex, 16);
    if (d.signum() == 0 || d.compareTo(DOMAIN.getN()) >= 0) {
      throw new IllegalArgumentException(
          "the node key file " + file + " holds no valid secp256k1 private key (zero or not below the curve order)");
    }
    return new EcdhKey(d);
  }

  /** The public key as Besu's SecurityModule gives it. */
  ECPoint publicPoint() {
    return publicPoint;
  }

  /** The 64-byte public key X‖Y as hex without 0x (Web3Signer's form, without 04). */
  String publicKeyHex() {
    return HexFormat.of().formatHex(publicKey);
  }

  /** The key's Ethereum address, 0x and 40 lower-case hex digits. */
  String address() {
    final KeccakDigest keccak = new KeccakDigest(256);
    keccak.update(publicKey, 0, publicKey.length);
    final byte[] hash = new byte[32];
    keccak.doFinal(hash, 0);
    return "0x" + HexFormat.of().formatHex(Arrays.copyOfRange(hash, 12, 32));
  }

  /**
   * The ECDH agreement with party: the x coordinate of d·party as 32 bytes.
   *
   * @throws IllegalArgumentException if party is not a point of secp256k1
   */
  byte[] agree(final ECPoint party) {
    if (party == null || party == ECPoint.POINT_INFINITY) {
      throw new IllegalArgumentException("the peer's public key is missing or the point at infinity");
    }
    final ECPublicKeyParameters peer;
    try {
      // validatePublicPoint: on the curve, not infinity, in the prime-order subgroup.
      peer =
          new ECPublicKeyParameters(
              DOMAIN.validatePublicPoint(CURVE.getCurve().createPoint(party.getAffineX(), party.getAffineY())),
              DOMAIN);
    } catch (final RuntimeException e) {
      throw new IllegalArgumentException("the peer's public key is not a secp256k1 point: " + e.getMessage());
    }
    final ECDHBasicAgreement agreement = new ECDHBasicAgreement();
    agreement.init(privateKey);
    final byte[] out = new byte[32];
    put32(agreement.calculateAgreement(peer), out, 0);
    return out;
  }

  /** Writes v, at most 32 bytes unsigned, big-endian and left-padded into out at off. */
  private static void put32(final BigInteger v, final byte[] out, final int off) {
    final byte[] b = v.toByteArray();
    final int n = Math.min(b.length, 32);
    System.arraycopy(b, b.length - n, out, off + 32 - n, n);
  }
}
