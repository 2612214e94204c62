"""What every command shares below the methods: files, processes, precision, checkpoints, metrics."""
