// Compile-only stub: the signature of tuweni-bytes 2.7.2 (the version Besu
// 26.2.0 pins in platform/build.gradle; Consensys/tuweni tag v2.7.2, commit
// 4725d6c0a7ea3f305cadc8f69a65fca80f01aa91), reduced to what the fence plugin
// and its harness use. Never shipped: Besu provides the real type at run time.
// bytes/src/main/java/org/apache/tuweni/bytes/Bytes32.java
package org.apache.tuweni.bytes;

public interface Bytes32 extends Bytes {
  int SIZE = 32;

  static Bytes32 wrap(final byte[] bytes) {
    if (bytes.length != SIZE) {
      throw new IllegalArgumentException("Expected " + SIZE + " bytes but got " + bytes.length);
    }
    return new Bytes32() {
      @Override
      public int size() {
        return SIZE;
      }

      @Override
      public byte get(final int i) {
        return bytes[i];
      }
    };
  }
}
