-- Each user's unread count, kept by the statements that change it, so that
-- reading it costs one row, not a count of the user's notifications.
CREATE TABLE herald_unread (
  user_id TEXT PRIMARY KEY,
  n BIGINT NOT NULL
);
INSERT INTO herald_unread (user_id, n)
SELECT user_id, COUNT(*) FROM herald_notifications WHERE read_at IS NULL GROUP BY user_id;
