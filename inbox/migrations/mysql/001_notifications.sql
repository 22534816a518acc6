-- Notifications, one row per recipient; times in unix ms. User ids and
-- dedupe keys are binary: compared byte for byte, trailing spaces included.
CREATE TABLE herald_notifications (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id VARBINARY(255) NOT NULL,
  type VARCHAR(255) NOT NULL,
  title TEXT NOT NULL,
  body MEDIUMTEXT NOT NULL,
  data MEDIUMTEXT,
  created_at BIGINT NOT NULL,
  read_at BIGINT,
  pushed TINYINT NOT NULL DEFAULT 0,
  INDEX herald_notifications_user (user_id, id),
  INDEX herald_notifications_unread (user_id, read_at, id),
  INDEX herald_notifications_unpushed (pushed, id),
  INDEX herald_notifications_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- Sends with a dedupe key, and the notifications they made (ids, comma-separated).
CREATE TABLE herald_sends (
  dedupe_key VARBINARY(255) NOT NULL PRIMARY KEY,
  ids MEDIUMTEXT NOT NULL,
  created_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
