from beach.actor import Actor


class WordCount(Actor):
    """Counts words in actor state: every WordCount actor shares the counts, and they outlive them."""

    def init(self, parameters):
        self.handle('count', self.count)
        self.handle('counts', self.counts)

    def count(self, msg):
        # one request, one turn: committed (with the request's id) before this reply goes out
        return (True, {'count': self.state.update(msg.data['word'], lambda n: (n or 0) + 1)})

    def counts(self, msg):
        return (True, {word: self.state.get(word) for word in self.state.keys()})
