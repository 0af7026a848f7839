import os
curFileDir = os.path.dirname( os.path.abspath( __file__ ) )

from beach.beach_api import Beach
beach = Beach( os.path.join( curFileDir, 'multinode.yaml' ),
               realm = 'global' )
a1 = beach.addActor( 'Ping', 'myactors/pingers', strategy = 'resource', parameters = {} )
a2 = beach.addActor( 'Pong', 'myactors/pongers', strategy = 'affinity', strategy_hint = 'pingers', parameters = {} )

beach.close()
