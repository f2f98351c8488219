import LifeboatCore

LifeboatCLI.run()
