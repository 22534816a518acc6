export {
  HeraldProvider,
  useHerald,
  useTopic,
  useTopics,
  useConnectionState,
  useConnectionError,
  useNotifications,
  usePresence,
  type HeraldProviderProps,
  type Notifications,
  type Presence,
} from './react.js';
export { Hub, type HubOptions, type RequestOptions } from './hub.js';
export type { Notification, InboxSnapshot } from './inbox.js';
export type { PresenceSnapshot } from './presence.js';
export { HeraldClient, HeraldError, type ConnectionState, type HeraldEvent, type HeraldClientOptions, type TokenReason } from '@herald/client';
