// React hooks over the tab's one socket (push.ts): the article's useWebSockets, presence and typing.
import { useEffect, useRef, useState } from "react";
import { Payload, PresenceState, pushSocket, RoomListener, updateToken } from "./push";

export interface Props {
  room: string;
  token?: string;
  permissions: { chat: boolean };
  onNewMessage: (payload: Payload) => void;
  /** Called when a reconnect could not recover missed messages: fetch the latest from the backend. */
  onRefetch?: () => void;
}

/**
 * The article's hook, on the shared socket: joins `room` on mount (reference counted, so two views of
 * one room join once) and leaves it on unmount. `connected` is true once the join is acknowledged.
 */
export function useWebSockets({ room, token, permissions, onNewMessage, onRefetch }: Props) {
  const [connected, setConnected] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // The latest callbacks, so that a new onNewMessage each render needs no re-subscription.
  const handlers = useRef({ onNewMessage, onRefetch });
  handlers.current = { onNewMessage, onRefetch };

  useEffect(() => {
    if (!permissions.chat || !room) return undefined;
    if (token) updateToken(token);
    const push = pushSocket();
    const listener: RoomListener = {
      onJoined: (ack) => {
        setConnected(ack.ok);
        setError(ack.ok ? null : (ack.error ?? "refused"));
      },
      onMessage: (payload) => handlers.current.onNewMessage(payload),
      onRefetch: () => handlers.current.onRefetch?.(),
    };
    const offStatus = push.onStatus((up) => up || setConnected(false));
    void push.acquire(room, listener);
    return () => {
      offStatus();
      push.release(room, listener);
      setConnected(false);
    };
  }, [room, permissions.chat]); // not `token`: a new token is used at the next (re)connection, no rejoin

  return { connected, error };
}

/** Who is in `room` (Phoenix.Presence shape: user id -> metas, one meta per socket of that user). */
export function usePresence(room: string): PresenceState {
  const [state, setState] = useState<PresenceState>({});
  useEffect(() => {
    const push = pushSocket();
    const listener = { onPresence: setState };
    void push.acquire(room, listener);
    return () => push.release(room, listener);
  }, [room]);
  return state;
}

/**
 * Typing in `room`: `typists` are the other users typing (their usernames); call `keyDown` on every key,
 * and typing stops by itself after `idleMs` without one (Linen's rule: 2 s).
 */
export function useTyping(room: string, me: string, username: string, idleMs = 2000) {
  const presence = usePresence(room);
  const timer = useRef<ReturnType<typeof setTimeout>>();
  const typing = useRef(false);

  const set = (value: boolean) => {
    if (typing.current === value) return; // only changes are sent
    typing.current = value;
    pushSocket().typing(room, value, username);
  };
  const keyDown = () => {
    set(true);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => set(false), idleMs);
  };
  useEffect(
    () => () => {
      clearTimeout(timer.current);
      if (typing.current) pushSocket().typing(room, false, username);
    },
    [room, username],
  );

  const typists = Object.entries(presence)
    .filter(([user, { metas }]) => user !== me && metas.some((m) => m.typing))
    .map(([user, { metas }]) => metas.find((m) => m.username)?.username ?? user);
  return { typists, keyDown };
}
