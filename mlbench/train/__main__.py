from .cli import command

command.main(prog_name="python -m mlbench.train")
