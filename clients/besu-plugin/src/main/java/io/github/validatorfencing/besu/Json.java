package io.github.validatorfencing.besu;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A strict JSON reader for the sidecar's small answers: objects, arrays, strings, integers, true,
 * false, null. Anything else, trailing data, duplicate keys or nesting deeper than 8 is refused
 * with an IllegalArgumentException that says where. The plugin reads its answers with this so
 * that it needs nothing beyond Besu's own class path.
 */
final class Json {
  private static final int MAX_DEPTH = 8;

  private final String s;
  private int i;

  private Json(final String s) {
    this.s = s;
  }

  /** Parses one JSON value that must fill text. */
  static Object parse(final String text) {
    final Json p = new Json(text);
    p.space();
    final Object v = p.value(0);
    p.space();
    if (p.i != text.length()) {
      throw p.error("trailing data");
    }
    return v;
  }

  private Object value(final int depth) {
    if (depth > MAX_DEPTH) {
      throw error("nested deeper than " + MAX_DEPTH);
    }
    if (i >= s.length()) {
      throw error("unexpected end");
    }
    final char c = s.charAt(i);
    switch (c) {
      case '{':
        return object(depth);
      case '[':
        return array(depth);
      case '"':
        return string();
      case 't':
        return literal("true", Boolean.TRUE);
      case 'f':
        return literal("false", Boolean.FALSE);
      case 'n':
        return literal("null", null);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) {
          return integer();
        }
        throw error("unexpected character");
    }
  }

  private Map<String, Object> object(final int depth) {
    final Map<String, Object> m = new LinkedHashMap<>();
    i++; // {
    space();
    if (peek() == '}') {
      i++;
      return m;
    }
    while (true) {
      space();
      if (peek() != '"') {
        throw error("expected a key");
      }
      final String k = string();
      space();
      expect(':');
      space();
      if (m.containsKey(k)) {
        throw error("duplicate key " + k);
      }
      m.put(k, value(depth + 1));
      space();
      if (peek() == ',') {
        i++;
        continue;
      }
      expect('}');
      return m;
    }
  }

  private List<Object> array(final int depth) {
    final List<Object> l = new ArrayList<>();
    i++; // [
    space();
    if (peek() == ']') {
      i++;
      return l;
    }
    while (true) {
      space();
      l.add(value(depth + 1));
      space();
      if (peek() == ',') {
        i++;
        continue;
      }
      expect(']');
      return l;
    }
  }

  private String string() {
    i++; // "
    final StringBuilder b = new StringBuilder();
    while (true) {
      if (i >= s.length()) {
        throw error("unterminated string");
      }
      final char c = s.charAt(i++);
      if (c == '"') {
        return b.toString();
      }
      if (c < 0x20) {
        throw error("control character in a string");
      }
      if (c != '\\') {
        b.append(c);
        continue;
      }
      if (i >= s.length()) {
        throw error("unterminated escape");
      }
      final char e = s.charAt(i++);
      switch (e) {
        case '"', '\\', '/' -> b.append(e);
        case 'b' -> b.append('\b');
        case 'f' -> b.append('\f');
        case 'n' -> b.append('\n');
        case 'r' -> b.append('\r');
        case 't' -> b.append('\t');
        case 'u' -> {
          if (i + 4 > s.length()) {
            throw error("short \\u escape");
          }
          int cp = 0;
          for (int k = 0; k < 4; k++) {
            final int d = Character.digit(s.charAt(i + k), 16);
            if (d < 0) {
              throw error("bad \\u escape");
            }
            cp = cp * 16 + d;
          }
          i += 4;
          b.append((char) cp);
        }
        default -> throw error("bad escape");
      }
    }
  }

  private BigInteger integer() {
    final int start = i;
    if (peek() == '-') {
      i++;
    }
    final int digits = i;
    while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
      i++;
    }
    if (i == digits || (s.charAt(digits) == '0' && i - digits > 1) || i - start > 40) {
      throw error("bad integer");
    }
    if (i < s.length() && (s.charAt(i) == '.' || s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
      throw error("only integers are expected");
    }
    return new BigInteger(s.substring(start, i));
  }

  private Object literal(final String word, final Object v) {
    if (!s.startsWith(word, i)) {
      throw error("unexpected word");
    }
    i += word.length();
    return v;
  }

  private void expect(final char c) {
    if (peek() != c) {
      throw error("expected '" + c + "'");
    }
    i++;
  }

  private char peek() {
    return i < s.length() ? s.charAt(i) : '\0';
  }

  private void space() {
    while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) {
      i++;
    }
  }

  private IllegalArgumentException error(final String what) {
    return new IllegalArgumentException("malformed JSON at offset " + i + ": " + what);
  }
}
