-- Notifications, one row per recipient; times in unix ms.
CREATE TABLE herald_notifications (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  type TEXT NOT NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  data TEXT,
  created_at INTEGER NOT NULL,
  read_at INTEGER,
  pushed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX herald_notifications_user ON herald_notifications (user_id, id);
CREATE INDEX herald_notifications_unread ON herald_notifications (user_id, id) WHERE read_at IS NULL;
CREATE INDEX herald_notifications_unpushed ON herald_notifications (id) WHERE pushed = 0;
CREATE INDEX herald_notifications_created ON herald_notifications (created_at);
-- Sends with a dedupe key, and the notifications they made (ids, comma-separated).
CREATE TABLE herald_sends (
  dedupe_key TEXT PRIMARY KEY,
  ids TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
