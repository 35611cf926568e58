package dev.tributary.gate;

import java.io.IOException;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;

/**
 * Warm standby for a JVM consumer that knows nothing of Tributary (docs/active-gate.md,
 * "Warm standby"). As a Java agent ({@code -javaagent:tributary-gate-agent.jar}, e.g. through
 * {@code KAFKA_OPTS}) it runs before the application's main: it loads the Kafka client's
 * classes, then holds main back until the pod's {@code tributary active-gate} says this
 * region is active: {@code /active} answers 200, or the gate's {@code --file} says
 * {@code "active":true} with a {@code validUntil} in the future. From then on it asks again
 * every poll interval and ends the JVM (exit 3, after the application's shutdown hooks: a
 * Kafka consumer leaves its group) at the first other answer, or when the gate cannot be
 * asked: fail closed. The JVM, its classes and the pod are ready before the region becomes
 * active; what is left at a move is the group join.
 *
 * <p>Arguments (comma-separated): {@code url=} (default http://127.0.0.1:9477/active) or
 * {@code file=} (the gate's {@code --file}; for pods on the host network, where the gate
 * listens on {@code --port 0}), {@code poll=} milliseconds (default 100), {@code preload=}
 * classes to load, separated by {@code ;} (default: the Kafka consumer's), {@code warmup=}
 * {@code consumer} (default: also build and close one KafkaConsumer that connects nowhere,
 * which loads and links its whole construction path) or {@code none}.
 */
public final class Agent {
    static final int EXIT_GATE_CLOSED = 3;
    static final String DEFAULT_PRELOAD = String.join(";",
            "org.apache.kafka.clients.consumer.KafkaConsumer",
            "org.apache.kafka.clients.consumer.ConsumerConfig",
            "org.apache.kafka.clients.consumer.internals.ClassicKafkaConsumer",
            "org.apache.kafka.clients.consumer.internals.ConsumerCoordinator",
            "org.apache.kafka.clients.consumer.internals.Fetcher",
            "org.apache.kafka.clients.NetworkClient",
            "org.apache.kafka.common.network.Selector",
            "org.apache.kafka.common.requests.JoinGroupRequest",
            "org.apache.kafka.common.requests.FetchResponse",
            "org.apache.kafka.common.serialization.StringDeserializer",
            "org.apache.kafka.common.metrics.Metrics");

    private Agent() {}

    public static void premain(String args) {
        String url = "http://127.0.0.1:9477/active";
        String file = null;
        long poll = 100;
        String preload = DEFAULT_PRELOAD;
        boolean warmup = true;
        if (args != null && !args.isEmpty()) {
            for (String kv : args.split(",")) {
                int eq = kv.indexOf('=');
                String k = eq < 0 ? kv : kv.substring(0, eq);
                String v = eq < 0 ? "" : kv.substring(eq + 1);
                switch (k) {
                    case "url": url = v; break;
                    case "file": file = v; break;
                    case "poll":
                        try {
                            poll = Long.parseLong(v);
                        } catch (NumberFormatException e) {
                            poll = 0;
                        }
                        if (poll <= 0) {
                            System.err.println("tributary-gate-agent: poll=" + v + ": a positive number of milliseconds");
                            System.exit(2);
                        }
                        break;
                    case "preload": preload = v; break;
                    case "warmup":
                        if (!v.equals("consumer") && !v.equals("none")) {
                            System.err.println("tributary-gate-agent: warmup=" + v + ": consumer or none");
                            System.exit(2);
                        }
                        warmup = v.equals("consumer");
                        break;
                    default:
                        System.err.println("tributary-gate-agent: unknown argument " + k
                                + " (url=, file=, poll=, preload=, warmup=)");
                        System.exit(2);
                }
            }
        }
        long start = System.nanoTime();
        int loaded = preload(preload);
        String warmed = warmup ? warmUpConsumer() : "no warm-up";
        final String gate = file != null ? file : url;
        final boolean fromFile = file != null;
        log("loaded " + loaded + " classes, " + warmed + ", in "
                + (System.nanoTime() - start) / 1_000_000 + " ms; waiting for " + gate);
        String last = null;
        while (true) {
            Answer a = fromFile ? read(gate) : ask(gate);
            if (a.status == 200) {
                log("gate open: " + a.body);
                break;
            }
            String reason = a.status + " " + reason(a.body);
            if (!reason.equals(last)) {
                log("waiting: " + a.status + " " + a.body);
                last = reason;
            }
            sleep(poll);
        }
        final long every = poll;
        Thread watch = new Thread(() -> {
            while (true) {
                sleep(every);
                Answer a = fromFile ? read(gate) : ask(gate);
                if (a.status != 200) {
                    log("gate closed: " + a.status + " " + a.body + "; exiting");
                    System.exit(EXIT_GATE_CLOSED);
                }
            }
        }, "tributary-gate-agent");
        watch.setDaemon(true);
        watch.start();
    }

    /** Loads (and initializes) each class it can; returns how many. */
    static int preload(String classes) {
        int n = 0;
        ClassLoader cl = ClassLoader.getSystemClassLoader();
        for (String c : classes.split(";")) {
            if (c.isBlank()) continue;
            try {
                Class.forName(c.trim(), true, cl);
                n++;
            } catch (Throwable e) {
                // Another client version: nothing to warm, nothing wrong.
            }
        }
        // The application's own main class, not initialized (its static state is its own).
        String command = System.getProperty("sun.java.command", "");
        String main = command.split(" ", 2)[0];
        if (!main.isEmpty() && !main.endsWith(".jar")) {
            try {
                Class.forName(main, false, cl);
                n++;
            } catch (Throwable e) {
                // Its own class path is the application's business.
            }
        }
        return n;
    }

    /**
     * Builds and closes a KafkaConsumer (by reflection: the agent has no Kafka dependency)
     * whose bootstrap server is never contacted: construction does not connect. Its client id
     * is its own, so the application's ids and metrics are untouched.
     */
    static String warmUpConsumer() {
        try {
            Class<?> consumer = Class.forName("org.apache.kafka.clients.consumer.KafkaConsumer");
            java.util.Properties p = new java.util.Properties();
            p.put("bootstrap.servers", "127.0.0.1:9");
            p.put("client.id", "tributary-gate-agent-warmup");
            p.put("key.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
            p.put("value.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
            Object c = consumer.getConstructor(java.util.Properties.class).newInstance(p);
            consumer.getMethod("close").invoke(c);
            return "a KafkaConsumer built and closed";
        } catch (ClassNotFoundException e) {
            return "no KafkaConsumer on the class path";
        } catch (Throwable e) {
            return "the KafkaConsumer warm-up failed (" + e + ")";
        }
    }

    static final class Answer {
        final int status;
        final String body;

        Answer(int status, String body) {
            this.status = status;
            this.body = body;
        }
    }

    /** One GET; status 0 when the gate cannot be asked. */
    static Answer ask(String url) {
        HttpURLConnection c = null;
        try {
            c = (HttpURLConnection) new URL(url).openConnection();
            c.setConnectTimeout(1000);
            c.setReadTimeout(1000);
            c.setUseCaches(false);
            int status = c.getResponseCode();
            InputStream in = status < 400 ? c.getInputStream() : c.getErrorStream();
            String body = in == null ? "" : new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
            return new Answer(status, body);
        } catch (IOException e) {
            return new Answer(0, "cannot ask the gate: " + e);
        } finally {
            if (c != null) c.disconnect();
        }
    }

    /** The gate's {@code "reason"} (its answers change with every renewal; the reason does not). */
    static String reason(String body) {
        java.util.regex.Matcher m =
                java.util.regex.Pattern.compile("\"reason\"\\s*:\\s*\"([^\"]*)\"").matcher(body);
        return m.find() ? m.group(1) : body;
    }

    /**
     * The gate's file as if it were {@code /active}: 200 only for {@code "active":true} with a
     * {@code validUntil} still ahead on this clock (the file does not change when the gate
     * dies; {@code validUntil} bounds how long it holds).
     */
    static Answer read(String path) {
        String body;
        try {
            body = new String(java.nio.file.Files.readAllBytes(java.nio.file.Paths.get(path)),
                    StandardCharsets.UTF_8).trim();
        } catch (IOException e) {
            return new Answer(0, "cannot read the gate's file: " + e);
        }
        if (!body.matches("(?s).*\"active\"\\s*:\\s*true.*")) {
            return new Answer(409, body);
        }
        java.util.regex.Matcher m = java.util.regex.Pattern
                .compile("\"validUntil\"\\s*:\\s*\"([^\"]+)\"").matcher(body);
        if (!m.find()) {
            return new Answer(409, "no validUntil: " + body);
        }
        try {
            java.time.Instant until = java.time.OffsetDateTime.parse(m.group(1)).toInstant();
            if (java.time.Instant.now().isBefore(until)) {
                return new Answer(200, body);
            }
            return new Answer(409, "{\"reason\":\"Stale\",\"validUntil\":\"" + m.group(1) + "\"}");
        } catch (java.time.format.DateTimeParseException e) {
            return new Answer(409, "validUntil unreadable: " + body);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static void log(String line) {
        System.err.println("tributary-gate-agent: " + line);
    }
}
