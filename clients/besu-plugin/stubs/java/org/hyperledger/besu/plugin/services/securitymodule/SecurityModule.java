// Compile-only stub: the signature of Besu 26.2.0 plugin-api
// (hyperledger/besu tag 26.2.0, commit e5e9ae21fb0655be1770cb69f68961a68f27d254),
// reduced to what the fence plugin and its harness use. Never shipped: Besu
// provides the real type at run time.
// plugin-api/src/main/java/org/hyperledger/besu/plugin/services/securitymodule/SecurityModule.java
// (Besu 26.4.0 and later add a default calculateECDHKeyAgreementCompressed, for
// DiscV5 only; a plugin compiled against 26.2.0 inherits that default.)
package org.hyperledger.besu.plugin.services.securitymodule;

import org.apache.tuweni.bytes.Bytes32;
import org.hyperledger.besu.plugin.services.securitymodule.data.PublicKey;
import org.hyperledger.besu.plugin.services.securitymodule.data.Signature;

public interface SecurityModule {
  Signature sign(Bytes32 dataHash) throws SecurityModuleException;

  PublicKey getPublicKey() throws SecurityModuleException;

  Bytes32 calculateECDHKeyAgreement(PublicKey partyKey) throws SecurityModuleException;
}
