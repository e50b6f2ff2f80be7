// Compile-only stub: the signature of tuweni-bytes 2.7.2 (the version Besu
// 26.2.0 pins in platform/build.gradle; Consensys/tuweni tag v2.7.2, commit
// 4725d6c0a7ea3f305cadc8f69a65fca80f01aa91), reduced to what the fence plugin
// and its harness use. Never shipped: Besu provides the real type at run time.
// bytes/src/main/java/org/apache/tuweni/bytes/Bytes.java
package org.apache.tuweni.bytes;

public interface Bytes extends Comparable<Bytes> {
  int size();

  byte get(int i);

  default byte[] toArray() {
    final byte[] out = new byte[size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = get(i);
    }
    return out;
  }

  @Override
  default int compareTo(final Bytes b) {
    return java.util.Arrays.compareUnsigned(toArray(), b.toArray());
  }
}
