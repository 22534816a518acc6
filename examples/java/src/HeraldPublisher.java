import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Publishes to Herald over HTTP with the JDK's java.net.http, as a back end
 * does: events to POST /v1/publish and notifications to POST /v1/notifications,
 * with the publish key as {@code Authorization: Bearer}.
 *
 * <p>What it guarantees:
 * <ul>
 * <li>A retry never doubles an event. Every event carries an idempotency key,
 * the caller's or a random UUID drawn once per call: the
 * {@code Idempotency-Key} header for one event, an {@code "id"} field per event
 * of a batch. Herald answers a key it has seen on the topic (within its
 * idempotency window, 2 minutes by default) with the first publish's id and
 * offset and appends nothing. A notification carries a {@code dedupe_key}
 * the same way (remembered 24 hours).</li>
 * <li>What may succeed later is retried, with the same key: network errors and
 * timeouts, 408, 429, 5xx, and a batch's 207 (partly appended). The wait is the
 * answer's {@code Retry-After} when it has one, else an exponential backoff with
 * full jitter; after {@code maxAttempts}, or when the next wait would end
 * more than {@link #RETRY_WITHIN} after the call began, the last failure is
 * thrown.</li>
 * <li>Any other 4xx is thrown at once as a {@link HeraldException} with
 * Herald's error code and message: retrying the same request cannot help.</li>
 * </ul>
 *
 * <p>Instances are thread-safe; make one per Herald and share it (in Spring, a
 * singleton bean).
 */
public final class HeraldPublisher {

    /** One event to publish. {@code dataJson} is any JSON value, or null. */
    public record Event(String topic, String type, String dataJson, String idempotencyKey) {
        public Event {
            Objects.requireNonNull(topic, "topic");
        }

        /** An event whose data is the text s (delivered as is). */
        public static Event text(String topic, String type, String s) {
            return new Event(topic, type, Json.quote(s), null);
        }

        /** The same event with the idempotency key k. */
        public Event withKey(String k) {
            return new Event(topic, type, dataJson, k);
        }
    }

    /** Herald's answer for an appended event: its cursor, topic and offset. */
    public record Published(String id, String topic, long offset) {}

    /** Herald's answer for a notification sent: one id per recipient. */
    public record Sent(List<String> ids, List<String> to, boolean duplicate) {}

    /** A request Herald refused, or one that still failed after every retry. */
    public static final class HeraldException extends RuntimeException {
        private static final long serialVersionUID = 1L;
        private final int status;
        private final String code;

        HeraldException(int status, String code, String message, Throwable cause) {
            super(status > 0 ? "herald: " + status + " " + code + ": " + message : "herald: " + message, cause);
            this.status = status;
            this.code = code;
        }

        /** The HTTP status; 0 when no answer came (network error, timeout). */
        public int status() {
            return status;
        }

        /** Herald's error code, e.g. invalid_topic, forbidden_topic, rate_limited. */
        public String code() {
            return code;
        }
    }

    private final URI base;
    private final String key;
    private final HttpClient http;
    private final Duration requestTimeout;
    /**
     * How long a call keeps retrying: well inside Herald's idempotency window
     * (-idempotency-window, 2 minutes by default), so that a retry of an event
     * that was appended is still recognised by its key and never doubles it.
     */
    public static final Duration RETRY_WITHIN = Duration.ofSeconds(60);

    private final int maxAttempts;
    private final Duration minBackoff;
    private final Duration maxBackoff;

    /**
     * A publisher with the defaults: 5 s to connect, 10 s per request, 5
     * attempts, backoff from 100 ms to 5 s.
     */
    public HeraldPublisher(String baseUrl, String publishKey) {
        this(baseUrl, publishKey, Duration.ofSeconds(5), Duration.ofSeconds(10), 5,
                Duration.ofMillis(100), Duration.ofSeconds(5));
    }

    public HeraldPublisher(String baseUrl, String publishKey, Duration connectTimeout,
            Duration requestTimeout, int maxAttempts, Duration minBackoff, Duration maxBackoff) {
        String b = Objects.requireNonNull(baseUrl, "baseUrl");
        this.base = URI.create(b.endsWith("/") ? b : b + "/");
        this.key = Objects.requireNonNull(publishKey, "publishKey");
        if (maxAttempts < 1) {
            throw new IllegalArgumentException("maxAttempts must be at least 1");
        }
        this.requestTimeout = requestTimeout;
        this.maxAttempts = maxAttempts;
        this.minBackoff = minBackoff;
        this.maxBackoff = maxBackoff;
        this.http = HttpClient.newBuilder()
                .connectTimeout(connectTimeout)
                .followRedirects(HttpClient.Redirect.NEVER)
                .build();
    }

    /** Publishes one event; its key, or a fresh one, makes retries safe. */
    public Published publish(Event e) throws InterruptedException {
        String k = e.idempotencyKey() != null ? e.idempotencyKey() : UUID.randomUUID().toString();
        String body = eventJson(e, null);
        Object answer = send("v1/publish", body, k, false);
        return published(Json.object(answer));
    }

    /**
     * Publishes a batch (at most 1000 events), appended in order. Each event
     * without a key gets a fresh one, so a retry of a batch Herald appended
     * in part (207) or whose answer was lost appends only what is missing.
     */
    public List<Published> publishBatch(List<Event> events) throws InterruptedException {
        if (events.isEmpty()) {
            throw new IllegalArgumentException("empty batch");
        }
        StringBuilder b = new StringBuilder("[");
        for (Event e : events) {
            if (b.length() > 1) {
                b.append(',');
            }
            String k = e.idempotencyKey() != null ? e.idempotencyKey() : UUID.randomUUID().toString();
            b.append(eventJson(e, k));
        }
        b.append(']');
        List<Published> out = new ArrayList<>();
        for (Object o : Json.array(send("v1/publish", b.toString(), null, true))) {
            out.add(published(Json.object(o)));
        }
        return out;
    }

    /**
     * Sends a notification to users: stored in their inboxes, then pushed to
     * each {@code users/{id}} as a {@code notification} event. {@code dedupeKey}
     * (null: a fresh one) makes a retried send return the first answer.
     */
    public Sent notify(List<String> to, String type, String title, String body, String dataJson,
            String dedupeKey) throws InterruptedException {
        StringBuilder b = new StringBuilder("{\"to\":[");
        for (int i = 0; i < to.size(); i++) {
            b.append(i > 0 ? "," : "").append(Json.quote(to.get(i)));
        }
        b.append("],\"type\":").append(Json.quote(type));
        if (title != null) {
            b.append(",\"title\":").append(Json.quote(title));
        }
        if (body != null) {
            b.append(",\"body\":").append(Json.quote(body));
        }
        if (dataJson != null) {
            Json.check(dataJson);
            b.append(",\"data\":").append(dataJson);
        }
        String k = dedupeKey != null ? dedupeKey : UUID.randomUUID().toString();
        b.append(",\"dedupe_key\":").append(Json.quote(k)).append('}');
        Map<String, Object> o = Json.object(send("v1/notifications", b.toString(), null, false));
        List<String> ids = new ArrayList<>();
        List<String> users = new ArrayList<>();
        for (Object n : Json.array(o.get("notifications"))) {
            ids.add(Json.string(Json.object(n), "id"));
            users.add(Json.string(Json.object(n), "to"));
        }
        return new Sent(ids, users, Boolean.TRUE.equals(o.get("duplicate")));
    }

    private static String eventJson(Event e, String idField) {
        StringBuilder b = new StringBuilder("{\"topic\":").append(Json.quote(e.topic()));
        if (e.type() != null) {
            b.append(",\"type\":").append(Json.quote(e.type()));
        }
        if (e.dataJson() != null) {
            Json.check(e.dataJson());
            b.append(",\"data\":").append(e.dataJson());
        }
        if (idField != null) {
            b.append(",\"id\":").append(Json.quote(idField));
        }
        return b.append('}').toString();
    }

    private static Published published(Map<String, Object> o) {
        Object off = o.get("offset");
        return new Published(Json.string(o, "id"), Json.string(o, "topic"),
                off instanceof java.math.BigDecimal d ? d.longValueExact() : -1);
    }

    /**
     * POSTs body, retrying what may succeed later, and returns the parsed
     * answer of the first 2xx (but a batch's 207, which is retried).
     */
    private Object send(String path, String body, String idempotencyKey, boolean batch)
            throws InterruptedException {
        HttpRequest.Builder rb = HttpRequest.newBuilder(base.resolve(path))
                .timeout(requestTimeout)
                .header("Authorization", "Bearer " + key)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
        if (idempotencyKey != null) {
            rb.header("Idempotency-Key", idempotencyKey);
        }
        HttpRequest req = rb.build();
        HeraldException last = null;
        long retryUntil = System.nanoTime() + RETRY_WITHIN.toNanos();
        for (int attempt = 1; ; attempt++) {
            Duration wait = null;
            try {
                HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
                int st = resp.statusCode();
                if (st / 100 == 2 && !(batch && st == 207)) {
                    try {
                        return Json.parse(resp.body());
                    } catch (IllegalArgumentException notJson) {
                        // Not Herald's answer (a proxy's page?): what happened is unknown.
                        throw new HeraldException(st, "bad_answer", "answer is not JSON: " + notJson.getMessage(), notJson);
                    }
                }
                last = error(st, resp.body());
                if (!(st == 207 || st == 408 || st == 429 || st >= 500)) {
                    throw last; // a 4xx: the same request would be refused again
                }
                wait = retryAfter(resp.headers().firstValue("Retry-After").orElse(null));
            } catch (IOException ex) { // refused, reset, timed out (HttpTimeoutException)
                last = new HeraldException(0, "network_error", ex.toString(), ex);
            }
            if (wait == null) {
                wait = backoff(attempt);
            }
            if (attempt >= maxAttempts || System.nanoTime() + wait.toNanos() > retryUntil) {
                throw last;
            }
            Thread.sleep(wait.toMillis());
        }
    }

    /** Herald's {"error":{"code","message"}}, or the body as is when it is not that. */
    private static HeraldException error(int status, String body) {
        if (status == 207) {
            return new HeraldException(status, "partial_batch", "part of the batch was not appended: " + body, null);
        }
        try {
            Map<String, Object> e = Json.object(Json.object(Json.parse(body)).get("error"));
            return new HeraldException(status, Json.string(e, "code"), Json.string(e, "message"), null);
        } catch (IllegalArgumentException notHeralds) {
            // A proxy's page, or Go's plain-text answers to malformed requests.
            String text = body.length() > 200 ? body.substring(0, 200) + "..." : body;
            return new HeraldException(status, "http_" + status, text.strip(), null);
        }
    }

    /** The delay of a Retry-After header (seconds or an HTTP date), or null. */
    static Duration retryAfter(String v) {
        if (v == null || v.isBlank()) {
            return null;
        }
        try {
            long s = Long.parseLong(v.strip());
            return s >= 0 ? Duration.ofSeconds(Math.min(s, 300)) : null;
        } catch (NumberFormatException notSeconds) {
            try {
                Duration d = Duration.between(ZonedDateTime.now(),
                        ZonedDateTime.parse(v.strip(), DateTimeFormatter.RFC_1123_DATE_TIME));
                return d.isNegative() ? Duration.ZERO : (d.getSeconds() > 300 ? Duration.ofSeconds(300) : d);
            } catch (DateTimeParseException notADate) {
                return null;
            }
        }
    }

    /** Full jitter: a random delay up to minBackoff * 2^(attempt-1), capped. */
    private Duration backoff(int attempt) {
        long cap = maxBackoff.toMillis();
        long ceil = Math.min(cap, minBackoff.toMillis() << Math.min(attempt - 1, 20));
        return Duration.ofMillis(ThreadLocalRandom.current().nextLong(Math.max(ceil, 1) + 1));
    }
}
