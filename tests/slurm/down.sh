#!/usr/bin/env bash
# Stops the single-node Slurm that tests/slurm/up.sh started (munged is left for others).
state=$(realpath -m "${SLURM_STATE:-target/slurm}")
for daemon in slurmd slurmctld; do
  pid_file="$state/run/$daemon.pid"
  [ -s "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null
done
exit 0
