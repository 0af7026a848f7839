"""Deploy the async example and use it from async code (start the node first:
``beach up examples/async_actors/async.yaml``)."""

import asyncio
import os

from beach import AsyncBeach

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'async.yaml')


async def main():
    beach = await AsyncBeach.open(CONFIG)
    try:
        await beach.addActor('Store', 'store', parameters={'initial': {'answer': 42}})
        await beach.addActor('Fetcher', 'fetchers')
        fetchers = beach.getActorHandle('fetchers')
        print(await fetchers.arequest('get', {'key': 'answer'}))
        print(await fetchers.arequest('get', {'key': 'question'}))
        replies = await asyncio.gather(*(fetchers.arequest('get', {'key': 'answer'}) for _ in range(100)))
        print(sum(r.isSuccess for r in replies), 'of 100 concurrent gets succeeded')
        await beach.flush()
    finally:
        await beach.close()


asyncio.run(main())
