from trtprof.cli import main

main(prog_name="trtprof")
