import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The little JSON the examples need, with the JDK only: quoting a string for a
 * request body, and reading Herald's answers into Map, List, String,
 * java.math.BigDecimal, Boolean or null. A Spring service would use Jackson
 * instead; nothing here is specific to Herald.
 */
final class Json {
    private Json() {}

    /** Returns s as a JSON string literal, quotes included. */
    static String quote(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                case '\b' -> b.append("\\b");
                case '\f' -> b.append("\\f");
                default -> {
                    // Control characters must be escaped; so are U+2028 and
                    // U+2029, which some JavaScript parsers choke on. A lone
                    // surrogate is not text: Herald refuses it (invalid_data),
                    // so it is refused here before anything is sent.
                    if (c < 0x20 || c == 0x2028 || c == 0x2029) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else if (Character.isHighSurrogate(c)) {
                        if (i + 1 >= s.length() || !Character.isLowSurrogate(s.charAt(i + 1))) {
                            throw new IllegalArgumentException("unpaired surrogate at index " + i);
                        }
                        b.append(c).append(s.charAt(++i));
                    } else if (Character.isLowSurrogate(c)) {
                        throw new IllegalArgumentException("unpaired surrogate at index " + i);
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    /** Parses one JSON value; anything after it but white space is an error. */
    static Object parse(String s) {
        Parser p = new Parser(s);
        Object v = p.value();
        p.space();
        if (p.i != s.length()) {
            throw p.error("trailing data");
        }
        return v;
    }

    /** Checks that s is one JSON value (for data handed over as raw JSON). */
    static void check(String s) {
        parse(s);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(Object v) {
        if (v instanceof Map) {
            return (Map<String, Object>) v;
        }
        throw new IllegalArgumentException("not a JSON object: " + v);
    }

    @SuppressWarnings("unchecked")
    static List<Object> array(Object v) {
        if (v instanceof List) {
            return (List<Object>) v;
        }
        throw new IllegalArgumentException("not a JSON array: " + v);
    }

    /** The string field name of object o, or null when absent or not a string. */
    static String string(Map<String, Object> o, String name) {
        return o.get(name) instanceof String s ? s : null;
    }

    private static final class Parser {
        final String s;
        int i;

        Parser(String s) {
            this.s = s;
        }

        IllegalArgumentException error(String what) {
            return new IllegalArgumentException("JSON: " + what + " at offset " + i);
        }

        void space() {
            while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
        }

        Object value() {
            space();
            if (i >= s.length()) {
                throw error("unexpected end");
            }
            char c = s.charAt(i);
            switch (c) {
                case '{': return obj();
                case '[': return arr();
                case '"': return str();
                case 't': return word("true", Boolean.TRUE);
                case 'f': return word("false", Boolean.FALSE);
                case 'n': return word("null", null);
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        return num();
                    }
                    throw error("unexpected '" + c + "'");
            }
        }

        Object word(String w, Object v) {
            if (!s.startsWith(w, i)) {
                throw error("bad literal");
            }
            i += w.length();
            return v;
        }

        Map<String, Object> obj() {
            Map<String, Object> m = new LinkedHashMap<>();
            i++;
            space();
            if (i < s.length() && s.charAt(i) == '}') {
                i++;
                return m;
            }
            while (true) {
                space();
                if (i >= s.length() || s.charAt(i) != '"') {
                    throw error("want a key");
                }
                String k = str();
                space();
                expect(':');
                m.put(k, value());
                space();
                if (i < s.length() && s.charAt(i) == ',') {
                    i++;
                    continue;
                }
                expect('}');
                return m;
            }
        }

        List<Object> arr() {
            List<Object> l = new ArrayList<>();
            i++;
            space();
            if (i < s.length() && s.charAt(i) == ']') {
                i++;
                return l;
            }
            while (true) {
                l.add(value());
                space();
                if (i < s.length() && s.charAt(i) == ',') {
                    i++;
                    continue;
                }
                expect(']');
                return l;
            }
        }

        void expect(char c) {
            if (i >= s.length() || s.charAt(i) != c) {
                throw error("want '" + c + "'");
            }
            i++;
        }

        String str() {
            i++; // the opening quote
            StringBuilder b = new StringBuilder();
            while (true) {
                if (i >= s.length()) {
                    throw error("unterminated string");
                }
                char c = s.charAt(i++);
                if (c == '"') {
                    return b.toString();
                }
                if (c < 0x20) {
                    throw error("control character in string");
                }
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                if (i >= s.length()) {
                    throw error("unterminated escape");
                }
                char e = s.charAt(i++);
                switch (e) {
                    case '"' -> b.append('"');
                    case '\\' -> b.append('\\');
                    case '/' -> b.append('/');
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
                        for (int k = 0; k < 4; k++) { // exactly four hex digits: no sign
                            int d = Character.digit(s.charAt(i + k), 16);
                            if (d < 0) {
                                throw error("bad \\u escape");
                            }
                            cp = cp * 16 + d;
                        }
                        b.append((char) cp);
                        i += 4;
                    }
                    default -> throw error("bad escape");
                }
            }
        }

        /** A number by JSON's grammar: -?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)? */
        java.math.BigDecimal num() {
            int start = i;
            if (i < s.length() && s.charAt(i) == '-') {
                i++;
            }
            if (i < s.length() && s.charAt(i) == '0') {
                i++;
            } else if (digits() == 0) {
                throw error("bad number");
            }
            if (i < s.length() && s.charAt(i) == '.') {
                i++;
                if (digits() == 0) {
                    throw error("bad number: no digit after the point");
                }
            }
            if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
                i++;
                if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                    i++;
                }
                if (digits() == 0) {
                    throw error("bad number: no digit in the exponent");
                }
            }
            return new java.math.BigDecimal(s.substring(start, i));
        }

        private int digits() {
            int n = 0;
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
                n++;
            }
            return n;
        }
    }
}
