import logging
import threading

from beach.actor import Actor

logger = logging.getLogger(__name__)


class Chatty(Actor):
    """Logs in every way an actor can: Actor.log/logCritical, its own logging records (from a
    handler, a timer, a thread it started), and floods on request."""

    def init(self, parameters):
        self.log(f"chatty up: {parameters.get('tag', '-')}")
        self.handle('say', self.say)
        self.handle('flood', self.flood)
        self.handle('thread', self.in_thread)
        self.handle('ping', lambda msg: (True, {'uid': self.name}))

    def say(self, msg):
        text = msg.data.get('text', 'hello')
        level = msg.data.get('level', 'info')
        if level == 'critical':
            self.logCritical(text)
        elif level == 'logging':
            logger.warning(text)
        else:
            self.log(text)
        return (True, {})

    def flood(self, msg):
        for i in range(msg.data.get('n', 10000)):
            logger.info('flood line %d', i)
        return (True, {})

    def in_thread(self, msg):
        done = threading.Event()

        def run(stop_event):
            logger.info(msg.data.get('text', 'from a thread'))
            done.set()

        self.newThread(run)
        done.wait(5)
        return (True, {})
