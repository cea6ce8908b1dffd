-- A task action's first round trip: lock the task's instance, then read its tokens and open
-- tasks. A function, so the reads after the lock are separate statements: in a VOLATILE
-- PL/pgSQL function each statement takes a fresh snapshot (READ COMMITTED), so what another
-- transaction committed while this one waited for the lock is seen, as it was with two
-- statements from the client.
CREATE FUNCTION workflows.lock_step_of_task(task uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    locked workflows.instances;
BEGIN
    SELECT * INTO locked FROM workflows.instances
    WHERE id = (SELECT instance_id FROM workflows.tasks WHERE id = task)
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object(
        'instance', to_jsonb(locked),
        'calendar_version', (SELECT version FROM workflows.calendar_version),
        'tokens', (SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]') FROM workflows.tokens t
                   WHERE t.instance_id = locked.id),
        'tasks', (SELECT coalesce(jsonb_agg(to_jsonb(k) ORDER BY k.created_at, k.id), '[]')
                  FROM workflows.tasks k WHERE k.instance_id = locked.id AND k.status = 'open')
    );
END;
$$;
