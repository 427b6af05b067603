"""psycopg 3 against a server URL: several connections at once, each with server-side prepared statements
(prepare_threshold=0, so every query is prepared as _pg3_N, the same names on every connection), pipeline mode,
a transaction, and COPY in and out. Every result is checked. Prints one JSON line:
{"queries": n, "ok": n, "wrong": [...], "errors": {"SQLSTATE or class": n}, "samples": [...]}.
Usage: python3 psycopg_check.py URL [CONNECTIONS] [ROUNDS]"""
import json
import sys
import threading

import psycopg

url = sys.argv[1]
connections = int(sys.argv[2]) if len(sys.argv) > 2 else 4
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
lock = threading.Lock()
tally = {"queries": 0, "ok": 0, "wrong": [], "errors": {}, "samples": []}


def check(label, fn):
    with lock:
        tally["queries"] += 1
    try:
        problem = fn()
    except psycopg.Error as error:
        key = getattr(error, "sqlstate", None) or type(error).__name__
        with lock:
            tally["errors"][key] = tally["errors"].get(key, 0) + 1
            if len(tally["samples"]) < 8:
                tally["samples"].append(f"{label}: {key} {str(error).splitlines()[0] if str(error) else ''}")
        return False
    with lock:
        if problem is None:
            tally["ok"] += 1
        else:
            tally["wrong"].append(f"{label}: {problem}")
    return problem is None


def worker(n):
    table = f"psycopg_t{n}"
    try:
        conn = psycopg.connect(url, prepare_threshold=0, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        check(f"connect {n}", lambda: (_ for _ in ()).throw(error))
        return
    with conn:
        conn.execute(f"drop table if exists {table}")
        conn.execute(f"create table {table} (id int primary key, label text)")
        for r in range(rounds):
            # The same statement text on every connection, so each prepares it under the same name.
            def typed():
                row = conn.execute("select %s::int * %s::int as v, %s::text as who", (r, n + 2, f"conn {n}")).fetchone()
                return None if row == (r * (n + 2), f"conn {n}") else f"got {row}"
            if not check(f"conn {n} round {r} prepared", typed):
                return

            def pipelined():
                with conn.pipeline():
                    cursors = [conn.execute("select %s::int + %s::int", (r, k)) for k in range(5)]
                got = [c.fetchone()[0] for c in cursors]
                return None if got == [r + k for k in range(5)] else f"got {got}"
            check(f"conn {n} round {r} pipeline", pipelined)

            def transaction():
                with conn.transaction():
                    conn.execute(f"insert into {table} values (%s, %s)", (r, f"{n}:{r}"))
                    count = conn.execute(f"select count(*) from {table}").fetchone()[0]
                return None if count == r + 1 else f"count {count} inside the transaction"
            check(f"conn {n} round {r} transaction", transaction)

        def copy():
            with conn.cursor() as cur:
                with cur.copy(f"copy {table} (id, label) from stdin") as copy_in:
                    for i in range(1000, 1500):
                        copy_in.write_row((i, f"copied {i}"))
                out = []
                with cur.copy(f"copy (select id from {table} where id >= 1000 order by id) to stdout") as copy_out:
                    for row in copy_out.rows():
                        out.append(int(row[0]))
            return None if out == list(range(1000, 1500)) else f"copied back {len(out)} rows"
        check(f"conn {n} copy", copy)


threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=60)
print(json.dumps(tally))
