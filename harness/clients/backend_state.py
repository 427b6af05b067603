"""What each connection must have of its own backend, checked with asyncpg and psycopg 3 against a server URL:
cursors and portals as one namespace, cursors WITH HOLD, temporary tables, advisory locks (session and transaction
level, shared, waits), backend pids, pg_cancel_backend and pg_terminate_backend, pg_stat_activity. Every step is
ordered by the server's answers, never by sleeps; waits are bounded. Prints one JSON line:
{"queries": n, "ok": n, "wrong": [...], "errors": {"SQLSTATE or class": n}, "samples": [...]}.
Usage: python3 backend_state.py URL [GROUP ...]   (groups: cursors temp advisory identity; default all)
BACKEND_STATE_STEP_MS in the environment replaces the 10 s bound on one step."""
import asyncio
import json
import os
import sys

import asyncpg
import psycopg

url = sys.argv[1]
groups = sys.argv[2:] or ["cursors", "temp", "advisory", "identity"]
tally = {"queries": 0, "ok": 0, "wrong": [], "errors": {}, "samples": []}
STEP = int(os.environ.get("BACKEND_STATE_STEP_MS", "10000")) / 1000  # seconds any one step may take
GROUP = 45  # seconds a group of checks may take
# What asyncpg raises on a connection the server ended (a FATAL that arrives while the connection is idle leaves
# asyncpg's protocol mid-operation: InternalClientError on the next call).
ENDED = (asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InternalClientError, ConnectionError, asyncpg.InterfaceError)


def record_error(label, error):
    key = getattr(error, "sqlstate", None) or type(error).__name__
    tally["errors"][key] = tally["errors"].get(key, 0) + 1
    if len(tally["samples"]) < 8:
        tally["samples"].append(f"{label}: {key} {str(error).splitlines()[0] if str(error) else ''}")


async def check(label, fn):
    """fn returns None when right, else what was wrong."""
    tally["queries"] += 1
    try:
        problem = await asyncio.wait_for(fn(), STEP)
    except (asyncpg.PostgresError, psycopg.Error, asyncio.TimeoutError, OSError, asyncpg.InterfaceError) as error:
        record_error(label, error)
        return False
    if problem is None:
        tally["ok"] += 1
    else:
        tally["wrong"].append(f"{label}: {problem}")
    return problem is None


def expect(got, want):
    return None if got == want else f"got {got!r}, want {want!r}"


async def pg(**kwargs):
    return await asyncio.wait_for(asyncpg.connect(url, timeout=STEP, **kwargs), STEP)


async def psy(**kwargs):
    return await asyncio.wait_for(psycopg.AsyncConnection.connect(url, connect_timeout=STEP, **kwargs), STEP)


async def close(*connections):
    """Close without waiting on a server that stopped answering."""
    for conn in connections:
        if conn is None:
            continue
        if isinstance(conn, asyncpg.Connection):
            conn.terminate()
        else:
            try:
                await asyncio.wait_for(conn.close(), 2)
            except (asyncio.TimeoutError, psycopg.Error, OSError):
                pass


async def cursors():
    # asyncpg: a portal made by Bind, moved by SQL MOVE (Cursor.forward), read by Execute.
    conn = await pg()
    other = await pg()
    try:
        async def asyncpg_forward():
            async with conn.transaction():
                cur = await conn.cursor("select generate_series(1, 10) as n")
                await cur.forward(3)
                rows = await cur.fetch(2)
                return expect([r["n"] for r in rows], [4, 5])
        await check("asyncpg Cursor.forward (SQL MOVE of a protocol portal)", asyncpg_forward)

        async def asyncpg_iterate_beside_other():
            got = []
            async with conn.transaction():
                async for record in conn.cursor("select generate_series(1, 5) as n", prefetch=2):
                    got.append(record["n"])
            got.append(await other.fetchval("select 42"))
            return expect(got, [1, 2, 3, 4, 5, 42])
        await check("asyncpg cursor iteration, then another connection", asyncpg_iterate_beside_other)
    finally:
        await close(conn, other)

    # psycopg: SQL DECLARE, then the portal described and fetched by protocol and by FETCH.
    a = await psy()
    b = await psy(autocommit=True)
    c = await psy(autocommit=True)
    try:
        async def psycopg_named_cursor():
            async with a.cursor(name="big") as cur:
                await cur.execute("select generate_series(1, 10) as n")
                first = await cur.fetchmany(3)
                rest = await cur.fetchall()
                column = cur.description[0].name
            await a.commit()
            return expect(([r[0] for r in first], len(rest), column), ([1, 2, 3], 7, "n"))
        await check("psycopg named cursor (DECLARE, then Describe of the portal)", psycopg_named_cursor)

        async def withhold_per_client():
            # The same name on two connections, each WITH HOLD (Django's .iterator() in autocommit).
            cb = b.cursor(name="shared_name", withhold=True)
            cc = c.cursor(name="shared_name", withhold=True)
            await cb.execute("select generate_series(1, 5)")
            await cc.execute("select generate_series(101, 105)")
            got = ([r[0] for r in await cb.fetchmany(2)], [r[0] for r in await cc.fetchmany(2)], [r[0] for r in await cb.fetchmany(2)])
            await cb.close()
            after_close = [r[0] for r in await cc.fetchmany(3)]
            await cc.close()
            return expect((got, after_close), (([1, 2], [101, 102], [3, 4]), [103, 104, 105]))
        await check("cursors WITH HOLD of one name on two connections", withhold_per_client)

        async def withhold_invisible_to_others():
            cb = b.cursor(name="mine_only", withhold=True)
            await cb.execute("select 1")
            try:
                await c.execute('fetch 1 from "mine_only"')
                return "another connection fetched it"
            except psycopg.errors.InvalidCursorName:
                return None
            finally:
                await cb.close()
        await check("a cursor WITH HOLD is its connection's alone (34000 elsewhere)", withhold_invisible_to_others)
    finally:
        await close(a, b, c)


async def temp():
    a = await pg()
    b = await pg()
    try:
        async def same_name():
            await a.execute("create temp table person (id int primary key, who text)")
            await b.execute("create temp table person (id int primary key, who text)")
            await a.execute("insert into person values (1, 'a')")
            await b.execute("insert into person values (1, 'b'), (2, 'b')")
            return expect((await a.fetch("select who from person order by id"), await b.fetchval("select count(*) from person")), ([("a",)], 2))
        await check("two connections' TEMP TABLE person, each its own", lambda: same_name())

        async def prepared_on_own_table():
            sa = await a.prepare("select count(*) from person")
            sb = await b.prepare("select count(*) from person")
            return expect([await sa.fetchval(), await sb.fetchval(), await sa.fetchval()], [1, 2, 1])
        await check("prepared statements each read their own temp table", prepared_on_own_table)

        async def on_commit():
            await a.execute("create temp table scratch (v int) on commit delete rows")
            async with a.transaction():
                await a.execute("insert into scratch values (1)")
                inside = await a.fetchval("select count(*) from scratch")
            after = await a.fetchval("select count(*) from scratch")
            async with a.transaction():
                await a.execute("create temp table gone (v int) on commit drop")
            exists = await a.fetchval("select to_regclass('pg_temp.gone') is not null")
            return expect((inside, after, exists), (1, 0, False))
        await check("ON COMMIT DELETE ROWS and ON COMMIT DROP", on_commit)

        async def not_seen_by_others():
            c = await pg()
            try:
                return expect(await c.fetchval("select to_regclass('person') is null"), True)
            finally:
                await close(c)
        await check("another connection does not see them", not_seen_by_others)

        async def gone_after_disconnect():
            await a.close()
            c = await pg()
            try:
                await c.execute("create temp table person (id int primary key)")
                return expect((await c.fetchval("select count(*) from person"), await b.fetchval("select count(*) from person")), (0, 2))
            finally:
                await close(c)
        await check("a connection's temp tables vanish when it leaves", gone_after_disconnect)
    finally:
        await close(a, b)


async def advisory():
    a = await pg()
    b = await pg()
    c = await pg()
    try:
        async def try_lock_exclusive():
            await a.execute("select pg_advisory_lock(4242)")
            got = [await b.fetchval("select pg_try_advisory_lock(4242)")]
            got.append(await a.fetchval("select pg_advisory_unlock(4242)"))
            got.append(await b.fetchval("select pg_try_advisory_lock(4242)"))
            got.append(await a.fetchval("select pg_try_advisory_lock(4242)"))
            await b.execute("select pg_advisory_unlock_all()")
            got.append(await a.fetchval("select pg_try_advisory_lock(4242)"))
            await a.execute("select pg_advisory_unlock(4242)")
            return expect(got, [False, True, True, False, True])
        await check("pg_try_advisory_lock is false while another connection holds the lock", try_lock_exclusive)

        async def unlock_not_held():
            return expect(await b.fetchval("select pg_advisory_unlock(777)"), False)
        await check("pg_advisory_unlock of a lock not held is false", unlock_not_held)

        async def shared():
            await a.execute("select pg_advisory_lock_shared(5)")
            got = [await b.fetchval("select pg_try_advisory_lock_shared(5)"), await c.fetchval("select pg_try_advisory_lock(5)")]
            await a.execute("select pg_advisory_unlock_shared(5)")
            await b.execute("select pg_advisory_unlock_shared(5)")
            got.append(await c.fetchval("select pg_try_advisory_lock(5)"))
            await c.execute("select pg_advisory_unlock(5)")
            return expect(got, [True, False, True])
        await check("shared locks share, exclusive waits for them", shared)

        async def two_int_keys():
            await a.execute("select pg_advisory_lock(1, 2)")
            got = [await b.fetchval("select pg_try_advisory_lock(1, 2)"), await b.fetchval("select pg_try_advisory_lock((1::bigint << 32) + 2)")]
            await a.execute("select pg_advisory_unlock(1, 2)")
            await b.execute("select pg_advisory_unlock_all()")
            return expect(got, [False, True])
        await check("a two-integer key is its own lock", two_int_keys)

        async def blocking_wait():
            await a.execute("select pg_advisory_lock(99)")
            waiter = asyncio.ensure_future(b.execute("select pg_advisory_lock(99)"))
            # a runs while b waits: b does not hold the session.
            during = await a.fetchval("select 7")
            pending = not waiter.done()
            await a.execute("select pg_advisory_unlock(99)")
            await asyncio.wait_for(waiter, STEP)
            held_by_b = await c.fetchval("select pg_try_advisory_lock(99)")
            await b.execute("select pg_advisory_unlock(99)")
            return expect((during, pending, held_by_b), (7, True, False))
        await check("pg_advisory_lock waits for the holder, who goes on meanwhile", blocking_wait)

        async def released_at_disconnect():
            d = await pg()
            await d.execute("select pg_advisory_lock(123)")
            before = await c.fetchval("select pg_try_advisory_lock(123)")
            await asyncio.wait_for(d.close(), STEP)
            after = await c.fetchval("select pg_try_advisory_lock(123)")
            await c.execute("select pg_advisory_unlock(123)")
            return expect((before, after), (False, True))
        await check("a connection's locks go when it leaves", released_at_disconnect)

        async def xact_level():
            async with a.transaction():
                await a.execute("select pg_advisory_xact_lock(31)")
            after_commit = await b.fetchval("select pg_try_advisory_lock(31)")
            await b.execute("select pg_advisory_unlock(31)")
            tx = a.transaction()
            await tx.start()
            await a.execute("select pg_try_advisory_xact_lock(32)")
            await tx.rollback()
            after_rollback = await b.fetchval("select pg_try_advisory_lock(32)")
            await b.execute("select pg_advisory_unlock(32)")
            return expect((after_commit, after_rollback), (True, True))
        await check("transaction-level locks end with the transaction", xact_level)

        async def lock_timeout_ends_wait():
            await a.execute("select pg_advisory_lock(55)")
            await b.execute("set lock_timeout = 300")
            try:
                await b.execute("select pg_advisory_lock(55)")
                return "the wait ended without an error"
            except asyncpg.exceptions.LockNotAvailableError:
                return None
            finally:
                await b.execute("reset lock_timeout")
                await a.execute("select pg_advisory_unlock(55)")
        await check("lock_timeout ends a wait with 55P03", lock_timeout_ends_wait)
    finally:
        await close(a, b, c)


async def identity():
    a = await pg()
    b = await pg()
    try:
        async def own_pid():
            return expect((await a.fetchval("select pg_backend_pid()"), await b.fetchval("select pg_backend_pid()")), (a.get_server_pid(), b.get_server_pid()))
        await check("pg_backend_pid() is the pid of the connection's BackendKeyData", own_pid)

        async def activity_rows():
            pids = {r["pid"] for r in await a.fetch("select pid from pg_stat_activity where backend_type = 'client backend'")}
            return None if {a.get_server_pid(), b.get_server_pid()} <= pids else f"pg_stat_activity pids {sorted(pids)}"
        await check("pg_stat_activity has a row per connection", activity_rows)

        async def unknown_pid():
            return expect(await a.fetchval("select pg_cancel_backend(1)"), False)
        await check("pg_cancel_backend of an unknown pid is false", unknown_pid)

        async def terminate_other():
            d = await pg()
            pid = d.get_server_pid()
            ok = await a.fetchval("select pg_terminate_backend($1)", pid)
            try:
                await d.fetchval("select 1")
                return "the terminated connection still answered"
            except ENDED:
                pass
            finally:
                d.terminate()
            return expect(ok, True)
        await check("pg_terminate_backend ends that connection (57P01)", terminate_other)

        async def cancel_waiting():
            await a.execute("select pg_advisory_lock(808)")
            d = await pg()
            try:
                waiter = asyncio.ensure_future(d.execute("select pg_advisory_lock(808)"))
                await a.fetchval("select 1")
                pid = d.get_server_pid()
                ok = await a.fetchval("select pg_cancel_backend($1)", pid)
                deadline = asyncio.get_running_loop().time() + STEP
                # A cancel that lands before the statement has started waiting finds the backend idle, which ignores
                # it (Postgres too, under load): ask again until the waiting statement ends.
                while not (await asyncio.wait({waiter}, timeout=0.5))[0]:
                    if asyncio.get_running_loop().time() > deadline:
                        waiter.cancel()
                        return "the waiting statement was not canceled"
                    await a.fetchval("select pg_cancel_backend($1)", pid)
                try:
                    waiter.result()
                    return "the waiting statement was not canceled"
                except asyncpg.exceptions.QueryCanceledError:
                    pass
                return expect((ok, await d.fetchval("select 5")), (True, 5))
            finally:
                await close(d)
        await check("pg_cancel_backend ends a waiting statement with 57014", cancel_waiting)

        async def terminate_self():
            d = await pg()
            try:
                await d.fetchval("select pg_terminate_backend(pg_backend_pid())")
                return "no error"
            except ENDED:
                return None
            finally:
                d.terminate()
        await check("pg_terminate_backend(pg_backend_pid()) ends the connection", terminate_self)
    finally:
        await close(a, b)


async def main():
    for group in groups:
        try:
            await asyncio.wait_for({"cursors": cursors, "temp": temp, "advisory": advisory, "identity": identity}[group](), GROUP)
        except Exception as error:  # a connection that failed to open: one failure, the next group runs
            tally["queries"] += 1
            record_error(f"{group} setup", error)
    print(json.dumps(tally))


asyncio.run(main())
