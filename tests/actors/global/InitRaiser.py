from beach.actor import Actor


class InitRaiser(Actor):
    def init(self, parameters):
        raise ValueError('init refused on purpose')
