// pgjdbc against a server: several connections at once, each past prepareThreshold (server-side statements named
// S_1, S_2... on every connection), batch inserts, a rolled-back transaction, and metadata queries. Every result
// is checked. Prints one JSON line: {"queries": n, "ok": n, "wrong": [...], "errors": {...}, "samples": [...]}.
// Usage: java -cp postgresql.jar JdbcCheck.java jdbc:postgresql://HOST:PORT/postgres [CONNECTIONS] [ROUNDS]
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class JdbcCheck {
  static int queries = 0, ok = 0;
  static final List<String> wrong = new ArrayList<>(), samples = new ArrayList<>();
  static final Map<String, Integer> errors = new TreeMap<>();

  interface Step { String run() throws Exception; }

  static synchronized void record(String label, String problem, Exception error) {
    queries++;
    if (error != null) {
      String key = error instanceof SQLException && ((SQLException) error).getSQLState() != null ? ((SQLException) error).getSQLState() : error.getClass().getSimpleName();
      errors.merge(key, 1, Integer::sum);
      if (samples.size() < 8) samples.add(label + ": " + key + " " + String.valueOf(error.getMessage()).split("\n")[0]);
    } else if (problem == null) ok++;
    else wrong.add(label + ": " + problem);
  }

  static boolean check(String label, Step step) {
    try {
      String problem = step.run();
      record(label, problem, null);
      return problem == null;
    } catch (Exception e) {
      record(label, null, e);
      return false;
    }
  }

  static String json(String s) { return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") + "\""; }

  public static void main(String[] args) throws Exception {
    String url = args[0];
    int connections = args.length > 1 ? Integer.parseInt(args[1]) : 4;
    int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 10;
    ExecutorService pool = Executors.newFixedThreadPool(connections);
    List<Future<?>> futures = new ArrayList<>();
    for (int n = 0; n < connections; n++) {
      final int c = n;
      futures.add(pool.submit(() -> worker(url, c, rounds)));
    }
    for (Future<?> f : futures) f.get(60, TimeUnit.SECONDS);
    pool.shutdown();
    StringBuilder out = new StringBuilder("{\"queries\": " + queries + ", \"ok\": " + ok + ", \"wrong\": [");
    for (int i = 0; i < wrong.size(); i++) out.append(i > 0 ? ", " : "").append(json(wrong.get(i)));
    out.append("], \"errors\": {");
    int i = 0;
    for (Map.Entry<String, Integer> e : errors.entrySet()) out.append(i++ > 0 ? ", " : "").append(json(e.getKey())).append(": ").append(e.getValue());
    out.append("}, \"samples\": [");
    for (i = 0; i < samples.size(); i++) out.append(i > 0 ? ", " : "").append(json(samples.get(i)));
    System.out.println(out.append("]}"));
  }

  static void worker(String url, int c, int rounds) {
    Properties props = new Properties();
    props.setProperty("user", "postgres");
    props.setProperty("prepareThreshold", "1");
    props.setProperty("connectTimeout", "5");
    props.setProperty("socketTimeout", "20");
    String table = "jdbc_t" + c;
    try (Connection conn = DriverManager.getConnection(url, props)) {
      try (Statement st = conn.createStatement()) {
        st.execute("drop table if exists " + table);
        st.execute("create table " + table + " (id int primary key, label text)");
      }
      // The same SQL on every connection: after prepareThreshold each uses a server-side statement (S_1...).
      try (PreparedStatement ps = conn.prepareStatement("select ?::int * ? as v, ?::text as who")) {
        for (int r = 0; r < rounds; r++) {
          final int round = r;
          if (!check("conn " + c + " round " + r, () -> {
            ps.setInt(1, round);
            ps.setInt(2, c + 2);
            ps.setString(3, "conn " + c);
            try (ResultSet rs = ps.executeQuery()) {
              if (!rs.next()) return "no row";
              int v = rs.getInt(1);
              String who = rs.getString(2);
              return v == round * (c + 2) && who.equals("conn " + c) ? null : "got " + v + ", " + who;
            }
          })) return;
        }
      }
      check("conn " + c + " batch insert", () -> {
        try (PreparedStatement ins = conn.prepareStatement("insert into " + table + " values (?, ?)")) {
          for (int i = 0; i < 200; i++) {
            ins.setInt(1, i);
            ins.setString(2, "row " + i);
            ins.addBatch();
          }
          int[] counts = ins.executeBatch();
          if (counts.length != 200) return "batch returned " + counts.length + " counts";
        }
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("select count(*), sum(id) from " + table)) {
          rs.next();
          return rs.getInt(1) == 200 && rs.getLong(2) == 199L * 200 / 2 ? null : "count " + rs.getInt(1) + " sum " + rs.getLong(2);
        }
      });
      check("conn " + c + " rolled-back transaction", () -> {
        conn.setAutoCommit(false);
        try (Statement st = conn.createStatement()) {
          st.executeUpdate("insert into " + table + " values (1000, 'gone')");
          conn.rollback();
        } finally {
          conn.setAutoCommit(true);
        }
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("select count(*) from " + table + " where id = 1000")) {
          rs.next();
          return rs.getInt(1) == 0 ? null : "rolled-back row is there";
        }
      });
      check("conn " + c + " metadata", () -> {
        DatabaseMetaData md = conn.getMetaData();
        List<String> columns = new ArrayList<>();
        try (ResultSet rs = md.getColumns(null, "public", table, null)) {
          while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
        }
        boolean found;
        try (ResultSet rs = md.getTables(null, "public", table, new String[] {"TABLE"})) { found = rs.next(); }
        return found && columns.equals(List.of("id:int4", "label:text")) ? null : "table found " + found + ", columns " + columns;
      });
    } catch (Exception e) {
      record("conn " + c, null, e);
    }
  }
}
