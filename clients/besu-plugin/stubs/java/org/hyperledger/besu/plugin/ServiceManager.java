// Compile-only stub: the signature of Besu 26.2.0 plugin-api
// (hyperledger/besu tag 26.2.0, commit e5e9ae21fb0655be1770cb69f68961a68f27d254),
// reduced to what the fence plugin and its harness use. Never shipped: Besu
// provides the real type at run time.
// plugin-api/src/main/java/org/hyperledger/besu/plugin/ServiceManager.java
package org.hyperledger.besu.plugin;

import java.util.Optional;
import org.hyperledger.besu.plugin.services.BesuService;

public interface ServiceManager {
  <T extends BesuService> void addService(Class<T> serviceType, T service);

  <T extends BesuService> Optional<T> getService(Class<T> serviceType);
}
