"""Phoenix Channels on the same port, rooms, auth, presence and pushes as Socket.IO (SPEC §9).

The original Linen frontend speaks Phoenix Channels (`new Socket(URL + "/socket", {params: {token}})`);
this package serves it over the project's own websocket codec (`transport/`), so that frontend works
unchanged. `serializer.py` is the pure wire format, `socket.py` one connection, `hub.py` the rooms.
"""
