"""The pipeline: plan -> select -> execute -> route -> answer, as one run."""
