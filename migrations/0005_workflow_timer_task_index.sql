-- Closing a task drops its unfired timers by task_id: without this index every task action
-- scanned all of the instance's open timers (measured: 162 → ~515 task actions per second).
CREATE INDEX timers_task ON workflows.timers (task_id) WHERE fired_at IS NULL AND task_id IS NOT NULL;
