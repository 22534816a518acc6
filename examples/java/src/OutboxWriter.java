import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.util.Objects;

/**
 * "Save, then notify" without a window in between: the business row and the
 * notification row go into one JDBC transaction of the application's own
 * MariaDB (or MySQL) database, and Herald, started with
 * {@code -outbox-dsn mysql://user:pass@host:3306/db}, relays what commits.
 *
 * <p>What it guarantees, with Herald's relay:
 * <ul>
 * <li>A committed order is notified once: its {@code herald_outbox} row
 * becomes one notification in the user's inbox, pushed once to
 * {@code users/{id}}, even if this process dies right after the commit.</li>
 * <li>A rolled-back order notifies nobody: its outbox row was never visible.</li>
 * <li>A user's notifications arrive in the order their rows were written.</li>
 * </ul>
 * Nothing here talks to Herald: no HTTP call inside the transaction, so a slow
 * or unreachable Herald never holds a database lock or fails an order.
 */
public final class OutboxWriter {

    /** Opens a connection: DataSource::getConnection, or DriverManager. */
    @FunctionalInterface
    public interface Connector {
        Connection open() throws SQLException;
    }

    /** Work done in the order's transaction after its rows are written (a payment, a stock check). */
    @FunctionalInterface
    public interface Step {
        void run(Connection c, long orderId) throws Exception;
    }

    /** The order was not placed: its transaction was rolled back, and nothing is notified. */
    public static final class OrderRolledBack extends Exception {
        private static final long serialVersionUID = 1L;

        OrderRolledBack(Throwable cause) {
            super("order rolled back: " + cause.getMessage(), cause);
        }
    }

    private final Connector db;

    public OutboxWriter(Connector db) {
        this.db = Objects.requireNonNull(db, "db");
    }

    /**
     * Creates the example's orders table, and herald_outbox with the DDL of
     * docs/inbox.md. Herald creates herald_outbox itself when it starts with
     * -outbox-dsn; creating it here too (IF NOT EXISTS, the same DDL) lets the
     * application write orders before Herald first ran.
     */
    public void createTables() throws SQLException {
        try (Connection c = db.open(); Statement s = c.createStatement()) {
            s.execute("""
                    CREATE TABLE IF NOT EXISTS orders (
                      id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                      user_id VARCHAR(255) NOT NULL,
                      item VARCHAR(255) NOT NULL,
                      amount_cents BIGINT NOT NULL,
                      created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""");
            s.execute("""
                    CREATE TABLE IF NOT EXISTS herald_outbox (
                      id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                      to_user VARBINARY(255) NOT NULL,
                      type VARCHAR(255) NOT NULL,
                      title TEXT NULL,
                      body MEDIUMTEXT NULL,
                      data MEDIUMTEXT NULL,
                      created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""");
        }
    }

    /**
     * Places an order: inserts the order and its notification, runs
     * {@code inTransaction} (null for nothing), and commits. If anything
     * throws, the transaction is rolled back and {@link OrderRolledBack} is
     * thrown: neither row exists, and the user is not notified.
     *
     * @return the order's id
     */
    public long placeOrder(String userId, String item, long amountCents, Step inTransaction)
            throws SQLException, OrderRolledBack {
        try (Connection c = db.open()) {
            c.setAutoCommit(false);
            try {
                long id;
                try (PreparedStatement ps = c.prepareStatement(
                        "INSERT INTO orders (user_id, item, amount_cents) VALUES (?, ?, ?)",
                        Statement.RETURN_GENERATED_KEYS)) {
                    ps.setString(1, userId);
                    ps.setString(2, item);
                    ps.setLong(3, amountCents);
                    ps.executeUpdate();
                    try (ResultSet keys = ps.getGeneratedKeys()) {
                        keys.next();
                        id = keys.getLong(1);
                    }
                }
                String data = "{\"order\":" + id + ",\"item\":" + Json.quote(item)
                        + ",\"amount_cents\":" + amountCents + "}";
                enqueue(c, userId, "order.created", "Order " + id + " placed",
                        item + ", " + java.math.BigDecimal.valueOf(amountCents, 2).toPlainString(), data);
                if (inTransaction != null) {
                    inTransaction.run(c, id);
                }
                c.commit();
                return id;
            } catch (Exception e) {
                try {
                    c.rollback();
                } catch (SQLException re) {
                    e.addSuppressed(re);
                }
                if (e instanceof SQLException se) {
                    throw se;
                }
                throw new OrderRolledBack(e);
            }
        }
    }

    /**
     * Inserts one herald_outbox row on c, in the caller's transaction: it is
     * relayed once that transaction commits, and never if it rolls back. This
     * is the one call a service with its own transactions needs (in Spring,
     * on DataSourceUtils.getConnection(dataSource) inside a @Transactional
     * method, or with JdbcTemplate.update and the same SQL).
     *
     * @param dataJson any JSON value, or null
     */
    public static void enqueue(Connection c, String toUser, String type, String title, String body,
            String dataJson) throws SQLException {
        if (dataJson != null) {
            Json.check(dataJson);
        }
        try (PreparedStatement ps = c.prepareStatement(
                "INSERT INTO herald_outbox (to_user, type, title, body, data) VALUES (?, ?, ?, ?, ?)")) {
            ps.setBytes(1, toUser.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            ps.setString(2, type);
            ps.setString(3, title != null ? title : "");
            ps.setString(4, body != null ? body : "");
            if (dataJson != null) {
                ps.setString(5, dataJson);
            } else {
                ps.setNull(5, Types.VARCHAR);
            }
            ps.executeUpdate();
        }
    }
}
