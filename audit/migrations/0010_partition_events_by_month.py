"""PostgreSQL: the event table becomes RANGE-partitioned by month of ``recorded_at``; SQLite keeps one table.

Why ``recorded_at`` and not ``occurred_at``: ``recorded_at`` is set by the
database clock at INSERT (``statement_timestamp()``), so it rises with
``seq`` up to the few milliseconds two concurrent inserts overlap.  A month's
partition is therefore one contiguous run of sequence numbers, which is what
sealed blocks are, and once a month is over no row can ever land in its
partition again (the clock does not go back), so a partition judged expired
stays expired.  ``occurred_at`` is written by the caller (backdated to the
request's arrival, set freely by imports and tests): partitioning on it would
scatter late or backdated rows into old partitions, a month's rows would not
be a seq range, and an "expired" partition could still receive rows.
Retention itself is still judged on ``occurred_at`` (the law counts from the
event), block by block, before a partition is dropped.

Conversion without copying: the populated table is renamed to
``audit_auditevent_plegacy`` and *attached* as the partition for everything
before the first month boundary after the newest row, so no row moves; the
months after it are new partitions, plus a DEFAULT partition so an insert
never fails when the creating task has not run.  The legacy partition is
purged by row deletes until it is wholly expired, then dropped whole.  An
empty table (a new installation) keeps no legacy partition: it starts with
this month and the next three.

Keys and uniqueness (PostgreSQL wants the partition key in every unique
index):

* primary key ``(seq, recorded_at)``; Django still sees ``seq`` as the pk.
* ``seq`` comes from one sequence (``audit_auditevent_seq_seq``, owned by
  the column, continued from the old identity), which never hands out a value
  twice.  A row that names its own ``seq`` (never the application: tampering
  or a hand-written import) is checked against every partition by the
  ``audit_event_unique_guard`` row trigger, so a duplicate in another month is
  refused too.
* ``event_id`` is unique within each partition: every month (and the
  legacy and default partitions) has its own unique index on it, which is
  also the lookup index.  PostgreSQL cannot enforce it across partitions
  without the partition key, and a global check costs an index probe per
  partition on every INSERT (measured: the bulk insert ran 3.5 times slower
  with it), so across months the guarantee is the application's uuid4: 122
  random bits, a collision chance of about 10^-20 after three billion events.
  A deliberate duplicate is tampering by a role that may INSERT, which could
  as well insert a fresh id; the verifier reports any row that is not in its
  sealed block.
* The seq check costs nothing for the application's inserts: a defaulted
  seq is recognised by ``currval`` and not looked up.

Indexes: every index the table had keeps its name on the partitioned parent
(the legacy table's own indexes are attached to them, not rebuilt), plus a
BRIN index on ``recorded_at``: inside a partition rows are in ``recorded_at``
order, so a few pages of BRIN summarise millions of rows for time-range scans.

Protections: the append-only statement triggers of 0003/0006 are installed on
the parent and on every partition (a statement on a partition does not fire
the parent's statement triggers).  Partitions are created by
``audit_partitions_ensure`` and removed only inside ``audit_purge_blocks``,
both ``SECURITY DEFINER`` functions owned by the owner role; the application
role has no privilege on the partitions themselves (``manage.py db_grants``).

The SQL is frozen here (not imported) so later code changes cannot alter what
this migration did.
"""

from django.conf import settings
from django.db import migrations

PARENT = "audit_auditevent"
LEGACY = "audit_auditevent_plegacy"
DEFAULT = "audit_auditevent_pdefault"
SEQUENCE = "audit_auditevent_seq_seq"
MONTHS_AHEAD = 3

UNIQUE_GUARD = """
CREATE OR REPLACE FUNCTION audit_event_unique_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_seqscan text;
    v_taken boolean;
BEGIN
    -- A defaulted seq was just drawn from the sequence by this session, and
    -- the sequence never repeats a value: only a seq the INSERT named itself
    -- (not this session's latest draw, or the one this session last stored)
    -- is looked up in every partition.  A session that never drew a value
    -- cannot name one at all: currval raises.
    IF NEW.seq <> currval('audit_auditevent_seq_seq')
       OR NEW.seq::text = current_setting('maas.audit_last_seq', true) THEN
        -- Index probes even in a month too new to have statistics (a seq scan
        -- there would make this check cost the whole partition).
        v_seqscan := current_setting('enable_seqscan');
        PERFORM set_config('enable_seqscan', 'off', true);
        v_taken := EXISTS (SELECT 1 FROM audit_auditevent WHERE seq = NEW.seq);
        PERFORM set_config('enable_seqscan', v_seqscan, true);
        IF v_taken THEN
            RAISE EXCEPTION 'audit event seq % already exists', NEW.seq USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    -- Transactional like any setting: a rolled-back insert takes it back.
    PERFORM set_config('maas.audit_last_seq', NEW.seq::text, false);
    RETURN NEW;
END;
$$;
"""

ENSURE_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_partitions_ensure(p_first date, p_months integer) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, {schema} AS $$
DECLARE
    v_month date;
    v_name text;
BEGIN
    IF p_first IS NULL OR p_months IS NULL OR p_months < 1 OR p_months > 36 THEN
        RAISE EXCEPTION 'audit partitions: invalid request % months from %', p_months, p_first;
    END IF;
    FOR i IN 0 .. p_months - 1 LOOP
        v_month := (date_trunc('month', p_first) + make_interval(months => i))::date;
        v_name := 'audit_auditevent_p' || to_char(v_month, 'YYYYMM');
        CONTINUE WHEN to_regclass(format('%I.%I', '{schema}', v_name)) IS NOT NULL;
        BEGIN
            -- Schema-qualified: pg_catalog comes first on this function's search_path.
            EXECUTE format(
                'CREATE TABLE %I.%I PARTITION OF %I.audit_auditevent FOR VALUES FROM (%L) TO (%L)',
                '{schema}', v_name, '{schema}', v_month::timestamp AT TIME ZONE 'UTC',
                (v_month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
        EXCEPTION
            WHEN invalid_object_definition THEN
                CONTINUE;  -- already covered (the legacy partition)
            WHEN check_violation THEN
                -- The default partition already holds rows of that month: they
                -- stay there (purged by row deletes); the month is not split.
                RAISE WARNING 'audit partition % not created: the default partition holds rows of that month', v_name;
                CONTINUE;
        END;
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I.%I (event_id)', v_name || '_event_id_key', '{schema}', v_name);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only_guard()',
                       v_name || '_append_only', '{schema}', v_name);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only_guard()',
                       v_name || '_no_truncate', '{schema}', v_name);
        RETURN NEXT v_name;
    END LOOP;
END;
$$;
"""

PURGE_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_purge_blocks(p_first_block bigint, p_last_block bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, {schema} AS $$
DECLARE
    floor_days CONSTANT integer := {floor_days};
    v_blocks bigint;
    v_first_seq bigint;
    v_last_seq bigint;
    v_newest timestamptz;
    v_removed bigint := 0;
    v_count bigint;
    v_low bigint;
    v_high bigint;
    v_part record;
    v_whole regclass[] := '{{}}';
    v_locked boolean := false;
BEGIN
    IF p_first_block IS NULL OR p_last_block IS NULL OR p_last_block < p_first_block THEN
        RAISE EXCEPTION 'audit purge refused: invalid block range % to %', p_first_block, p_last_block;
    END IF;
    SELECT count(*), min(first_seq), max(last_seq), max(last_occurred_at)
        INTO v_blocks, v_first_seq, v_last_seq, v_newest
        FROM audit_sealedblock WHERE number BETWEEN p_first_block AND p_last_block;
    IF v_blocks <> p_last_block - p_first_block + 1 THEN
        RAISE EXCEPTION 'audit purge refused: blocks % to % are not all sealed and present', p_first_block, p_last_block;
    END IF;
    SELECT greatest(v_newest, max(occurred_at)) INTO v_newest
        FROM audit_auditevent WHERE seq BETWEEN v_first_seq AND v_last_seq;
    IF v_newest >= now() - make_interval(days => floor_days) THEN
        RAISE EXCEPTION 'audit purge refused: blocks % to % hold events younger than the % day retention floor',
            p_first_block, p_last_block, floor_days;
    END IF;
    IF EXISTS (
        SELECT 1 FROM audit_legalhold h
        WHERE h.released_at IS NULL
          AND (h.tenant_slug = '*' OR h.tenant_slug IN (
              SELECT DISTINCT e.tenant_slug FROM audit_auditevent e WHERE e.seq BETWEEN v_first_seq AND v_last_seq))
    ) THEN
        RAISE EXCEPTION 'audit purge refused: a legal hold covers blocks % to %', p_first_block, p_last_block;
    END IF;
    -- A partition whose every row lies in the purged range goes whole
    -- (DETACH + DROP: no dead tuples, no vacuum); the range's rows in any
    -- other partition are deleted row by row.
    FOR v_part IN
        SELECT i.inhrelid::regclass AS rel FROM pg_inherits i
        WHERE i.inhparent = 'audit_auditevent'::regclass ORDER BY i.inhrelid
    LOOP
        EXECUTE format('SELECT min(seq), max(seq) FROM %s', v_part.rel) INTO v_low, v_high;
        CONTINUE WHEN v_low IS NULL OR v_high < v_first_seq OR v_low > v_last_seq;
        IF v_low >= v_first_seq AND v_high <= v_last_seq
           AND NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'audit_auditevent'::regclass
                           AND partdefid = v_part.rel) THEN
            v_whole := v_whole || v_part.rel;
        ELSE
            EXECUTE format('DELETE FROM %s WHERE seq BETWEEN $1 AND $2', v_part.rel) USING v_first_seq, v_last_seq;
            GET DIAGNOSTICS v_count = ROW_COUNT;
            v_removed := v_removed + v_count;
        END IF;
    END LOOP;
    IF coalesce(array_length(v_whole, 1), 0) > 0 THEN
        -- DETACH holds ACCESS EXCLUSIVE on the parent until commit.  Queueing
        -- for it behind a long reader (an export) would stall every INSERT
        -- queued behind it, so it is taken only when free (NOWAIT), retried
        -- for about five seconds; otherwise the purge fails and is retried later.
        FOR v_try IN 1 .. 100 LOOP
            BEGIN
                LOCK TABLE audit_auditevent IN ACCESS EXCLUSIVE MODE NOWAIT;
                v_locked := true;
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                PERFORM pg_sleep(0.05);
            END;
        END LOOP;
        IF NOT v_locked THEN
            RAISE EXCEPTION 'audit purge: the event table stayed busy, no partition was dropped'
                USING ERRCODE = 'lock_not_available';
        END IF;
    END IF;
    FOR i IN 1 .. coalesce(array_length(v_whole, 1), 0) LOOP
        EXECUTE format('SELECT count(*) FROM %s', v_whole[i]) INTO v_count;
        v_removed := v_removed + v_count;
        EXECUTE format('ALTER TABLE audit_auditevent DETACH PARTITION %s', v_whole[i]);
        EXECUTE format('DROP TABLE %s', v_whole[i]);
    END LOOP;
    DELETE FROM audit_sealedblock WHERE number BETWEEN p_first_block AND p_last_block;
    RETURN v_removed;
END;
$$;
"""

# 0006's purge function, restored on the way back.
PURGE_FUNCTION_0006 = """
CREATE OR REPLACE FUNCTION audit_purge_blocks(p_first_block bigint, p_last_block bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, {schema} AS $$
DECLARE
    floor_days CONSTANT integer := {floor_days};
    v_blocks bigint;
    v_first_seq bigint;
    v_last_seq bigint;
    v_newest timestamptz;
    v_removed bigint;
BEGIN
    IF p_first_block IS NULL OR p_last_block IS NULL OR p_last_block < p_first_block THEN
        RAISE EXCEPTION 'audit purge refused: invalid block range % to %', p_first_block, p_last_block;
    END IF;
    SELECT count(*), min(first_seq), max(last_seq), max(last_occurred_at)
        INTO v_blocks, v_first_seq, v_last_seq, v_newest
        FROM audit_sealedblock WHERE number BETWEEN p_first_block AND p_last_block;
    IF v_blocks <> p_last_block - p_first_block + 1 THEN
        RAISE EXCEPTION 'audit purge refused: blocks % to % are not all sealed and present', p_first_block, p_last_block;
    END IF;
    SELECT greatest(v_newest, max(occurred_at)) INTO v_newest
        FROM audit_auditevent WHERE seq BETWEEN v_first_seq AND v_last_seq;
    IF v_newest >= now() - make_interval(days => floor_days) THEN
        RAISE EXCEPTION 'audit purge refused: blocks % to % hold events younger than the % day retention floor',
            p_first_block, p_last_block, floor_days;
    END IF;
    IF EXISTS (
        SELECT 1 FROM audit_legalhold h
        WHERE h.released_at IS NULL
          AND (h.tenant_slug = '*' OR h.tenant_slug IN (
              SELECT DISTINCT e.tenant_slug FROM audit_auditevent e WHERE e.seq BETWEEN v_first_seq AND v_last_seq))
    ) THEN
        RAISE EXCEPTION 'audit purge refused: a legal hold covers blocks % to %', p_first_block, p_last_block;
    END IF;
    DELETE FROM audit_auditevent WHERE seq BETWEEN v_first_seq AND v_last_seq;
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    DELETE FROM audit_sealedblock WHERE number BETWEEN p_first_block AND p_last_block;
    RETURN v_removed;
END;
$$;
"""


def _guard_statements(table: str) -> list[str]:
    return [
        f'CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "{table}" '
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only_guard()",
        f'CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON "{table}" '
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only_guard()",
    ]


def _schema(cursor) -> str:
    cursor.execute("SELECT current_schema()")
    return cursor.fetchone()[0]


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite: one table, as before
    run = schema_editor.execute
    with schema_editor.connection.cursor() as cursor:
        schema = _schema(cursor)
        cursor.execute(f'LOCK TABLE "{PARENT}" IN ACCESS EXCLUSIVE MODE')
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'seq')", [PARENT])
        old_sequence = cursor.fetchone()[0]
        cursor.execute(f"SELECT last_value, is_called FROM {old_sequence}")
        last_value, is_called = cursor.fetchone()
        # The first month boundary after every existing row (and after now).
        cursor.execute(
            "SELECT (date_trunc('month', greatest(now(), coalesce(max(recorded_at), now())) AT TIME ZONE 'UTC')"
            f" + interval '1 month') AT TIME ZONE 'UTC' FROM \"{PARENT}\""
        )
        boundary = cursor.fetchone()[0]
        cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{PARENT}")')
        populated = cursor.fetchone()[0]
        cursor.execute("SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date")
        this_month = cursor.fetchone()[0]
        cursor.execute(
            "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT i.indisunique ORDER BY c.relname",
            [PARENT],
        )
        plain_indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype IN ('p', 'u')", [PARENT]
        )
        keys = [row[0] for row in cursor.fetchall()]

    run(f'ALTER TABLE "{PARENT}" RENAME TO "{LEGACY}"')
    run(f'ALTER TABLE "{LEGACY}" ALTER COLUMN seq DROP IDENTITY')
    for name in keys:
        if name == f"{PARENT}_pkey":  # replaced by the parent's (seq, recorded_at)
            run(f'ALTER TABLE "{LEGACY}" DROP CONSTRAINT "{name}"')
        else:  # event_id: stays the legacy partition's own unique index, as every month has one
            run(f'ALTER TABLE "{LEGACY}" RENAME CONSTRAINT "{name}" TO {LEGACY}_event_id_key')
    for name, _ in plain_indexes:  # free the names for the parent's partitioned indexes
        run(f'ALTER INDEX "{name}" RENAME TO "{(name[:48] + "_plegacy")}"')
    for trigger in ("append_only", "no_truncate"):
        run(f'ALTER TRIGGER {PARENT}_{trigger} ON "{LEGACY}" RENAME TO {LEGACY}_{trigger}')

    run(
        f'CREATE TABLE "{PARENT}" (LIKE "{LEGACY}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS) '
        "PARTITION BY RANGE (recorded_at)"
    )
    run(f'CREATE SEQUENCE "{SEQUENCE}" AS bigint OWNED BY "{PARENT}".seq')
    run("SELECT setval(%s, %s, %s)", [SEQUENCE, max(int(last_value), 1), bool(is_called)])
    run(f"ALTER TABLE \"{PARENT}\" ALTER COLUMN seq SET DEFAULT nextval('{SEQUENCE}')")
    run(f'ALTER TABLE "{PARENT}" ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY (seq, recorded_at)')
    run(f'ALTER TABLE "{LEGACY}" ADD CONSTRAINT {LEGACY}_pkey PRIMARY KEY (seq, recorded_at)')
    for name, definition in plain_indexes:
        # Same definition on the parent: ATTACH PARTITION adopts the legacy index instead of building one.
        on = definition.index(" USING ")
        run(f'CREATE INDEX "{name}" ON "{PARENT}"{definition[on:]}')
    run(f'CREATE INDEX audit_recorded_brin ON "{PARENT}" USING brin (recorded_at)')
    if populated:
        bound = boundary.isoformat()
        run(f'ALTER TABLE "{PARENT}" ATTACH PARTITION "{LEGACY}" FOR VALUES FROM (MINVALUE) TO (\'{bound}\')')
    else:
        run(f'DROP TABLE "{LEGACY}"')  # a new installation: nothing to keep, months from this one on
    run(f'CREATE TABLE "{DEFAULT}" PARTITION OF "{PARENT}" DEFAULT')
    run(f'CREATE UNIQUE INDEX {DEFAULT}_event_id_key ON "{DEFAULT}" (event_id)')
    for table in (PARENT, DEFAULT):
        for statement in _guard_statements(table):
            run(statement)
    run(UNIQUE_GUARD, params=None)
    run(
        f'CREATE TRIGGER audit_event_unique BEFORE INSERT ON "{PARENT}" '
        "FOR EACH ROW EXECUTE FUNCTION audit_event_unique_guard()"
    )
    floor = int(settings.AUDIT_RETENTION_FLOOR_DAYS)
    run(ENSURE_FUNCTION.format(schema=schema), params=None)
    run("REVOKE ALL ON FUNCTION audit_partitions_ensure(date, integer) FROM PUBLIC")
    run(PURGE_FUNCTION.format(schema=schema, floor_days=floor), params=None)
    run("REVOKE ALL ON FUNCTION audit_purge_blocks(bigint, bigint) FROM PUBLIC")
    first = boundary.date() if populated else this_month
    run("SELECT count(*) FROM audit_partitions_ensure(%s::date, %s)", [first, MONTHS_AHEAD + (0 if populated else 1)])


def unpartition(apps, schema_editor):
    """Back to one table (a copy: rows move from the partitions into it)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    run = schema_editor.execute
    flat = f"{PARENT}_flat"
    with schema_editor.connection.cursor() as cursor:
        schema = _schema(cursor)
        cursor.execute(f"SELECT last_value, is_called FROM {SEQUENCE}")
        last_value, is_called = cursor.fetchone()
        cursor.execute(
            "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND c.relname <> 'audit_recorded_brin' "
            "ORDER BY c.relname",
            [PARENT],
        )
        plain_indexes = cursor.fetchall()
    run(f'CREATE TABLE "{flat}" (LIKE "{PARENT}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
    run(f'ALTER TABLE "{flat}" ALTER COLUMN seq DROP DEFAULT')
    run(f'INSERT INTO "{flat}" SELECT * FROM "{PARENT}" ORDER BY seq')
    run(f'DROP TABLE "{PARENT}" CASCADE')
    run("DROP FUNCTION IF EXISTS audit_event_unique_guard()")
    run("DROP FUNCTION IF EXISTS audit_partitions_ensure(date, integer)")
    run(f'ALTER TABLE "{flat}" RENAME TO "{PARENT}"')
    run(f'ALTER TABLE "{PARENT}" ALTER COLUMN seq ADD GENERATED BY DEFAULT AS IDENTITY')
    run("SELECT setval(pg_get_serial_sequence(%s, 'seq'), %s, %s)", [PARENT, int(last_value), bool(is_called)])
    run(f'ALTER TABLE "{PARENT}" ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY (seq)')
    run(f'ALTER TABLE "{PARENT}" ADD CONSTRAINT {PARENT}_event_id_key UNIQUE (event_id)')
    for name, definition in plain_indexes:
        on = definition.index(" USING ")
        run(f'CREATE INDEX "{name}" ON "{PARENT}"{definition[on:]}')
    for statement in _guard_statements(PARENT):
        run(statement)
    floor = int(settings.AUDIT_RETENTION_FLOOR_DAYS)
    run(PURGE_FUNCTION_0006.format(schema=schema, floor_days=floor), params=None)
    run("REVOKE ALL ON FUNCTION audit_purge_blocks(bigint, bigint) FROM PUBLIC")


class Migration(migrations.Migration):
    # One transaction: a failure anywhere leaves the old table exactly as it was.
    atomic = True

    dependencies = [("audit", "0009_audit_verification_event_type")]

    operations = [migrations.RunPython(partition, unpartition)]
