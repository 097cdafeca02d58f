#!/usr/bin/env python3
"""Delaying TCP relay: every byte is delivered DELAY_MS after it was read, each way
(so one round trip through the relay gains 2*DELAY_MS). Order kept, no serialization
of chunks: a chunk is due at read time + delay. usage: relay.py LISTEN_PORT TARGET_PORT DELAY_MS"""
import asyncio, sys, time

LP, TP, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000.0

async def pump(reader, writer):
    q = asyncio.Queue()
    async def out():
        while True:
            due, data = await q.get()
            if data is None:
                break
            d = due - time.monotonic()
            if d > 0:
                await asyncio.sleep(d)
            writer.write(data)
            await writer.drain()
        try: writer.close()
        except Exception: pass
    t = asyncio.ensure_future(out())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            q.put_nowait((time.monotonic() + DELAY, data))
    except Exception:
        pass
    q.put_nowait((0, None))
    await t

async def handle(cr, cw):
    try:
        sr, sw = await asyncio.open_connection("127.0.0.1", TP)
    except Exception:
        cw.close(); return
    await asyncio.gather(pump(cr, sw), pump(sr, cw), return_exceptions=True)

async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", LP)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
