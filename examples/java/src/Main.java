import java.sql.DriverManager;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A small command line over HeraldPublisher and OutboxWriter, calling them the
 * way a Spring service would (see README.md):
 *
 * <pre>
 * java -cp out:/usr/share/java/mariadb-java-client.jar Main publish --topic orders/7 --type shipped --data '{"order":7}' [--idempotency-key order-7-shipped]
 * java ... Main batch --topic rooms/7 --type state [--key-prefix K] DATA...
 * java ... Main notify --to 42 [--to 43] --type welcome [--title T] [--body B] [--data JSON] [--dedupe-key K]
 * java ... Main order --user 42 --item book --amount-cents 1299 [--fail REASON]
 * </pre>
 *
 * Herald: HERALD_URL (default http://127.0.0.1:8080) and HERALD_PUBLISH_KEY, or
 * --herald-url and --publish-key. The database (order): JDBC_URL, e.g.
 * jdbc:mariadb://127.0.0.1:3306/shop, JDBC_USER, JDBC_PASSWORD, or --jdbc-url,
 * --jdbc-user, --jdbc-password.
 *
 * <p>Each result is printed as one line of JSON. Exit status: 0 done; 1 Herald
 * refused the request or it failed after every retry (the error's code and
 * message on stderr); 2 bad usage; 3 the order was rolled back (--fail), so
 * nothing was notified.
 */
public final class Main {
    private Main() {}

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0) {
            usage("no command");
        }
        Args a = new Args(argv, 1);
        try {
            switch (argv[0]) {
                case "publish" -> publish(a);
                case "batch" -> batch(a);
                case "notify" -> notify(a);
                case "order" -> order(a);
                default -> usage("unknown command " + argv[0]);
            }
        } catch (HeraldPublisher.HeraldException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(1);
        } catch (IllegalArgumentException e) {
            usage(e.getMessage());
        }
    }

    private static HeraldPublisher publisher(Args a) {
        String url = a.one("herald-url", env("HERALD_URL", "http://127.0.0.1:8080"));
        String key = a.one("publish-key", env("HERALD_PUBLISH_KEY", null));
        if (key == null) {
            usage("no publish key: set HERALD_PUBLISH_KEY or --publish-key");
        }
        return new HeraldPublisher(url, key);
    }

    private static void publish(Args a) throws InterruptedException {
        a.only("topic", "type", "data", "text", "idempotency-key");
        HeraldPublisher p = publisher(a);
        String data = a.one("data", null);
        String text = a.one("text", null);
        if (data == null && text != null) {
            data = Json.quote(text);
        }
        HeraldPublisher.Event e = new HeraldPublisher.Event(a.required("topic"), a.one("type", null), data,
                a.one("idempotency-key", null));
        print(p.publish(e));
    }

    private static void batch(Args a) throws InterruptedException {
        a.only("topic", "type", "key-prefix");
        HeraldPublisher p = publisher(a);
        String topic = a.required("topic");
        String type = a.one("type", null);
        String prefix = a.one("key-prefix", null);
        List<HeraldPublisher.Event> events = new ArrayList<>();
        for (String data : a.positional) {
            String k = prefix == null ? null : prefix + "-" + (events.size() + 1);
            events.add(new HeraldPublisher.Event(topic, type, data, k));
        }
        if (events.isEmpty()) {
            usage("batch: no events (give each event's data as an argument)");
        }
        for (HeraldPublisher.Published r : p.publishBatch(events)) {
            print(r);
        }
    }

    private static void notify(Args a) throws InterruptedException {
        a.only("to", "type", "title", "body", "data", "dedupe-key");
        HeraldPublisher p = publisher(a);
        List<String> to = a.all("to");
        if (to.isEmpty()) {
            usage("notify: no --to");
        }
        HeraldPublisher.Sent s = p.notify(to, a.required("type"), a.one("title", null), a.one("body", null),
                a.one("data", null), a.one("dedupe-key", null));
        StringBuilder b = new StringBuilder("{\"ids\":[");
        for (int i = 0; i < s.ids().size(); i++) {
            b.append(i > 0 ? "," : "").append(Json.quote(s.ids().get(i)));
        }
        System.out.println(b.append("],\"duplicate\":").append(s.duplicate()).append('}'));
    }

    private static void order(Args a) throws Exception {
        a.only("user", "item", "amount-cents", "fail", "jdbc-url", "jdbc-user", "jdbc-password");
        String url = a.one("jdbc-url", env("JDBC_URL", null));
        if (url == null) {
            usage("order: no database: set JDBC_URL or --jdbc-url (jdbc:mariadb://host:3306/db)");
        }
        String user = a.one("jdbc-user", env("JDBC_USER", "root"));
        String pass = a.one("jdbc-password", env("JDBC_PASSWORD", ""));
        OutboxWriter w = new OutboxWriter(() -> DriverManager.getConnection(url, user, pass));
        w.createTables();
        String fail = a.one("fail", null);
        OutboxWriter.Step step = fail == null ? null : (c, id) -> {
            throw new IllegalStateException(fail);
        };
        long amount;
        try {
            amount = Long.parseLong(a.required("amount-cents"));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("order: --amount-cents is not a whole number");
        }
        try {
            long id = w.placeOrder(a.required("user"), a.required("item"), amount, step);
            System.out.println("{\"order\":" + id + "}");
        } catch (OutboxWriter.OrderRolledBack e) {
            System.out.println("{\"rolled_back\":true,\"reason\":" + Json.quote(e.getCause().getMessage()) + "}");
            System.exit(3);
        }
    }

    private static void print(HeraldPublisher.Published r) {
        System.out.println("{\"id\":" + Json.quote(r.id()) + ",\"topic\":" + Json.quote(r.topic())
                + ",\"offset\":" + r.offset() + "}");
    }

    private static String env(String name, String def) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? def : v;
    }

    private static void usage(String why) {
        System.err.println("usage: " + why + """

                  Main publish --topic T [--type X] [--data JSON | --text S] [--idempotency-key K]
                  Main batch --topic T [--type X] [--key-prefix K] DATA...
                  Main notify --to USER... --type X [--title T] [--body B] [--data JSON] [--dedupe-key K]
                  Main order --user U --item I --amount-cents N [--fail REASON]
                Herald: HERALD_URL, HERALD_PUBLISH_KEY (or --herald-url, --publish-key).
                Database: JDBC_URL, JDBC_USER, JDBC_PASSWORD (or --jdbc-url, --jdbc-user, --jdbc-password).""");
        System.exit(2);
    }

    /** --name value flags (repeatable) and positional arguments. */
    private static final class Args {
        final Map<String, List<String>> flags = new HashMap<>();
        final List<String> positional = new ArrayList<>();

        Args(String[] argv, int from) {
            for (int i = from; i < argv.length; i++) {
                String s = argv[i];
                if (s.startsWith("--") && s.length() > 2) {
                    String name = s.substring(2);
                    String value;
                    int eq = name.indexOf('=');
                    if (eq >= 0) {
                        value = name.substring(eq + 1);
                        name = name.substring(0, eq);
                    } else if (i + 1 < argv.length) {
                        value = argv[++i];
                    } else {
                        throw new IllegalArgumentException("--" + name + " needs a value");
                    }
                    flags.computeIfAbsent(name, k -> new ArrayList<>()).add(value);
                } else {
                    positional.add(s);
                }
            }
        }

        /** Refuses flags other than names and Herald's (a typo must not drop a key). */
        void only(String... names) {
            List<String> ok = new ArrayList<>(List.of(names));
            ok.addAll(List.of("herald-url", "publish-key"));
            for (String f : flags.keySet()) {
                if (!ok.contains(f)) {
                    throw new IllegalArgumentException("unknown flag --" + f);
                }
            }
            if (!ok.contains("key-prefix") && !positional.isEmpty()) {
                throw new IllegalArgumentException("unexpected argument " + positional.get(0));
            }
        }

        String one(String name, String def) {
            List<String> v = flags.get(name);
            return v == null ? def : v.get(v.size() - 1);
        }

        List<String> all(String name) {
            return flags.getOrDefault(name, List.of());
        }

        String required(String name) {
            String v = one(name, null);
            if (v == null) {
                throw new IllegalArgumentException("missing --" + name);
            }
            return v;
        }
    }
}
