package io.github.validatorfencing.besu;

import java.math.BigInteger;
import java.net.URI;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.tuweni.bytes.Bytes32;
import org.hyperledger.besu.plugin.services.securitymodule.SecurityModule;
import org.hyperledger.besu.plugin.services.securitymodule.SecurityModuleException;
import org.hyperledger.besu.plugin.services.securitymodule.data.PublicKey;
import org.hyperledger.besu.plugin.services.securitymodule.data.Signature;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Besu's node key, split: {@link #sign} goes to fence-sidecar ({@code POST /v1/sign/digest}, the
 * epoch fence), {@link #calculateECDHKeyAgreement} and {@link #getPublicKey} stay in the process
 * with the key file the fence gate releases.
 *
 * <p>sign must only return a signature the sidecar made under a lease it held at that moment (in
 * strict mode: confirmed in etcd); it never signs with the local key. Every failure is a {@link
 * SecurityModuleException}: Besu's QBFT and IBFT 2.0 rounds catch exactly that type, log it and
 * leave the step unsigned (QbftRound, IbftRound, QbftBlockHeightManager in Besu 26.2.0), so a
 * refused signature costs the round, never the consensus thread.
 */
public final class FenceSecurityModule implements SecurityModule {
  private static final Logger LOG = LoggerFactory.getLogger(FenceSecurityModule.class);
  private static final BigInteger N =
      new BigInteger("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16);

  private final EcdhKey key;
  private final SidecarClient sidecar;
  private final String validator;
  private final AtomicLong lastEpoch = new AtomicLong();

  /**
   * Loads the key file and checks that the sidecar holds the same key, so that Besu never gets a
   * signature that does not recover to its own public key.
   *
   * @throws SecurityModuleException naming every problem; Besu does not start
   */
  FenceSecurityModule(final FenceOptions options) {
    final URI base;
    try {
      base = options.validate();
      this.key = EcdhKey.load(options.keyFile);
    } catch (final IllegalArgumentException e) {
      throw new SecurityModuleException("fence plugin: " + e.getMessage());
    }
    this.sidecar = new SidecarClient(base, Duration.ofMillis(options.requestTimeoutMillis));
    this.validator = key.address();
    final List<String> keys;
    try {
      keys = sidecar.publicKeys();
    } catch (final SidecarClient.SidecarException e) {
      throw new SecurityModuleException("fence plugin: cannot list the sidecar's keys: " + e.getMessage());
    } catch (final InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new SecurityModuleException("fence plugin: interrupted while listing the sidecar's keys");
    }
    if (!keys.contains(key.publicKeyHex())) {
      throw new SecurityModuleException(
          "fence plugin: fence-sidecar at "
              + base
              + " holds no key for validator "
              + validator
              + " (the key of --plugin-fence-key-file); it holds "
              + keys.size()
              + " other key(s)");
    }
    LOG.info("fence plugin: signing for validator {} through fence-sidecar at {}", validator, base);
  }

  @Override
  public Signature sign(final Bytes32 dataHash) throws SecurityModuleException {
    final byte[] digest = dataHash.toArray();
    if (digest.length != 32) {
      throw new SecurityModuleException("fence plugin: a hash to sign has " + digest.length + " bytes, not 32");
    }
    final SidecarClient.Signed signed;
    try {
      signed = sidecar.signDigest(validator, digest);
    } catch (final SidecarClient.SidecarException e) {
      throw new SecurityModuleException("fence-sidecar refused the signature: " + e.getMessage());
    } catch (final InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new SecurityModuleException("fence plugin: interrupted while waiting for the signature");
    } catch (final RuntimeException e) {
      // Nothing but SecurityModuleException may reach Besu's rounds (see the class comment).
      throw new SecurityModuleException("fence plugin: signature request failed: " + e, e);
    }
    final byte[] sig = signed.signature();
    final BigInteger r = new BigInteger(1, sig, 0, 32);
    final BigInteger s = new BigInteger(1, sig, 32, 32);
    if (r.signum() == 0 || r.compareTo(N) >= 0 || s.signum() == 0 || s.compareTo(N) >= 0) {
      throw new SecurityModuleException("fence plugin: the sidecar's signature has R or S out of range");
    }
    final long previous = lastEpoch.getAndSet(signed.epoch());
    if (previous != signed.epoch()) {
      LOG.info("fence plugin: signing under fencing epoch {} (before: {})", signed.epoch(), previous);
    }
    return new Signature() {
      @Override
      public BigInteger getR() {
        return r;
      }

      @Override
      public BigInteger getS() {
        return s;
      }
    };
  }

  @Override
  public PublicKey getPublicKey() throws SecurityModuleException {
    return key::publicPoint;
  }

  @Override
  public Bytes32 calculateECDHKeyAgreement(final PublicKey partyKey) throws SecurityModuleException {
    try {
      return Bytes32.wrap(key.agree(partyKey == null ? null : partyKey.getW()));
    } catch (final RuntimeException e) {
      throw new SecurityModuleException("fence plugin: ECDH failed: " + e.getMessage(), e);
    }
  }
}
