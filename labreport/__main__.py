from labreport.cli import main

main(prog_name="labreport")
