// One socket per browser tab, shared by every component that listens to a room (no React in here).
//
// The original frontend opened one Phoenix socket per hook: 4-5 sockets and auth round trips a page.
// Here the first room a component acquires opens the tab's socket, every later one joins on it, and a
// room is left when the last component holding it lets go (reference counts); the socket closes when
// no room is held. Missed-message recovery is socket.io-client's own (connection state recovery): a
// reconnect that recovers keeps its rooms and gets what it missed; one that does not rejoins every held
// room and tells the listeners to refetch.
import { io, ManagerOptions, Socket, SocketOptions } from "socket.io-client";

export type TokenSource = string | (() => string | Promise<string>);
export type Payload = Record<string, unknown>;
export interface Meta {
  phx_ref: string;
  online_at?: string | number;
  typing?: boolean;
  username?: string;
}
export type PresenceState = Record<string, { metas: Meta[] }>;
export interface Ack {
  ok: boolean;
  room?: string;
  error?: string;
}
export interface PushConfig {
  url: string;
  token: TokenSource;
  options?: Partial<ManagerOptions & SocketOptions>;
}

export type RoomListener = {
  /** Every answer to a join of the room (rejoins after a fresh reconnect too), and `{ok: true}` on recovery. */
  onJoined?: (ack: Ack) => void;
  onMessage?: (payload: Payload) => void;
  onPresence?: (state: PresenceState) => void;
  onRefetch?: () => void;
};

let config: PushConfig | null = null;
let shared: PushSocket | null = null;
let opened = 0; // sockets opened by this module: the tests check it stays 1 a page

/** Where the tab's socket connects, and how it gets a token (called again before every reconnect). */
export function configurePush(next: PushConfig): void {
  config = next;
}

/** A token a component was given (the article passes one to every hook): the next connection uses it. */
export function updateToken(token: string): void {
  if (config && typeof config.token === "string") config = { ...config, token };
}

export function socketsOpened(): number {
  return opened;
}

/** The rooms a `new_msg` payload was pushed to, from the ids sio-push routes it by (SPEC section 2). */
export function roomsOf(payload: Payload): string[] {
  const rooms: string[] = [];
  const id = (key: string) => (typeof payload[key] === "string" ? (payload[key] as string) : null);
  if (id("channel_id")) rooms.push(`room:lobby:${id("channel_id")}`);
  if (id("thread_id")) rooms.push(`room:topic:${id("thread_id")}`);
  if (id("community_id")) rooms.push(`room:${id("community_id")}`);
  if (id("user_id")) rooms.push(`user:${id("user_id")}`);
  return rooms;
}

/** phoenix.js Presence.syncDiff on a copy: leaves by phx_ref, then joins. */
export function syncDiff(state: PresenceState, joins: PresenceState, leaves: PresenceState): PresenceState {
  const next: PresenceState = { ...state };
  for (const [user, { metas }] of Object.entries(leaves)) {
    const gone = new Set(metas.map((m) => m.phx_ref));
    const kept = (next[user]?.metas ?? []).filter((m) => !gone.has(m.phx_ref));
    if (kept.length) next[user] = { metas: kept };
    else delete next[user];
  }
  for (const [user, { metas }] of Object.entries(joins)) {
    const fresh = new Set(metas.map((m) => m.phx_ref));
    next[user] = { metas: (next[user]?.metas ?? []).filter((m) => !fresh.has(m.phx_ref)).concat(metas) };
  }
  return next;
}

export class PushSocket {
  readonly socket: Socket;
  private counts = new Map<string, number>();
  private joined = new Set<string>();
  private listeners = new Map<string, Set<RoomListener>>();
  private presence = new Map<string, PresenceState>();
  private statusListeners = new Set<(connected: boolean) => void>();
  private everConnected = false;

  constructor({ url, token, options }: PushConfig) {
    const auth = (callback: (data: object) => void) => {
      const source = config?.token ?? token;
      Promise.resolve(typeof source === "function" ? source() : source).then(
        (value) => callback({ token: value }),
        () => callback({}), // the server answers token_missing; the app shows it
      );
    };
    this.socket = io(url, { transports: ["websocket", "polling"], ...options, auth });
    opened += 1;
    this.socket.on("connect", () => this.connected());
    this.socket.on("disconnect", () => this.statusListeners.forEach((listener) => listener(false)));
    this.socket.on("connect_error", (err: Error & { data?: { code?: string } }) => {
      // An expired token: connect again, which asks for a new one. Other refusals are final.
      if (err.data?.code === "token_expired") setTimeout(() => this.socket.connect(), 1000);
    });
    this.socket.on("new_msg", (payload: Payload) => {
      for (const room of roomsOf(payload)) this.listeners.get(room)?.forEach((l) => l.onMessage?.(payload));
    });
    this.socket.on("presence_state", ({ room, state }: { room: string; state: PresenceState }) =>
      this.setPresence(room, state),
    );
    this.socket.on("presence_diff", (diff: { room: string; joins: PresenceState; leaves: PresenceState }) =>
      this.setPresence(diff.room, syncDiff(this.presence.get(diff.room) ?? {}, diff.joins, diff.leaves)),
    );
  }

  /** Hold `room`: joined on the first hold. Resolves with the server's answer to the join. */
  acquire(room: string, listener: RoomListener): Promise<Ack> {
    const count = this.counts.get(room) ?? 0;
    this.counts.set(room, count + 1);
    if (!this.listeners.has(room)) this.listeners.set(room, new Set());
    this.listeners.get(room)!.add(listener);
    if (this.presence.has(room)) listener.onPresence?.(this.presence.get(room)!);
    if (count > 0 && this.joined.has(room)) {
      listener.onJoined?.({ ok: true, room });
      return Promise.resolve({ ok: true, room });
    }
    return this.join(room);
  }

  /** Let go of `room`: left when the last holder lets go; the socket closes when nothing is held. */
  release(room: string, listener: RoomListener): void {
    this.listeners.get(room)?.delete(listener);
    const count = (this.counts.get(room) ?? 1) - 1;
    if (count > 0) {
      this.counts.set(room, count);
      return;
    }
    this.counts.delete(room);
    this.listeners.delete(room);
    this.presence.delete(room);
    if (this.joined.delete(room) && this.socket.connected) this.socket.emit("leave", room);
    if (this.counts.size === 0) {
      this.socket.disconnect();
      if (shared === this) shared = null;
    }
  }

  /** The rooms held, each with how many holders it has. */
  held(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  onStatus(listener: (connected: boolean) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  typing(room: string, typing: boolean, username: string): void {
    if (this.joined.has(room)) this.socket.emit("user:typing", { room, typing, username });
  }

  private join(room: string): Promise<Ack> {
    return new Promise((resolve) => {
      this.socket.emit("join", room, (ack: Ack) => {
        if (ack.ok && this.counts.has(room)) this.joined.add(room);
        else if (ack.ok) this.socket.emit("leave", room); // let go of while the join was on its way
        this.listeners.get(room)?.forEach((l) => l.onJoined?.(ack));
        resolve(ack);
      });
    });
  }

  private connected(): void {
    this.statusListeners.forEach((listener) => listener(true));
    const reconnect = this.everConnected;
    this.everConnected = true;
    // The first connection sends the joins that acquire() queued; a recovered one kept its rooms and got
    // every missed event, in order.
    if (!reconnect) return;
    if (this.socket.recovered) {
      for (const room of this.joined) this.listeners.get(room)?.forEach((l) => l.onJoined?.({ ok: true, room }));
      return;
    }
    // A fresh session holds only its user room: join the others again, then let their views refetch.
    this.joined.clear();
    for (const room of this.counts.keys()) {
      void this.join(room).then(() => this.listeners.get(room)?.forEach((l) => l.onRefetch?.()));
    }
  }

  private setPresence(room: string, state: PresenceState): void {
    if (!this.counts.has(room)) return;
    this.presence.set(room, state);
    this.listeners.get(room)?.forEach((l) => l.onPresence?.(state));
  }
}

/** The tab's socket, opened by the first caller (after `configurePush`). */
export function pushSocket(): PushSocket {
  if (!config) throw new Error("call configurePush({url, token}) first");
  shared ??= new PushSocket(config);
  return shared;
}
