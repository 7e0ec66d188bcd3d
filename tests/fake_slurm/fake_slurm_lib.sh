# Test double: shared code of the fake SLURM commands in this folder (sourced, not run).
#
# The fakes run every job on this machine, so that submitit (hydra/launcher=slurm) can be tested
# end to end without a cluster. Their state is plain files in $FAKE_SLURM_DIR (default
# ${TMPDIR:-/tmp}/fake-slurm-<uid>), one folder per submitted job:
#
#   next_id                    the next job id
#   jobs/<id>/script.sh        the batch script as submitted
#   jobs/<id>/options          every sbatch option, one "key=value" per line (#SBATCH lines, then
#                              the command line, which wins); the tests read what was asked for
#   jobs/<id>/tasks            the array indices ("0 1 2"), or "-" for a job that is not an array
#   jobs/<id>/task-<i>.state   PENDING, RUNNING, COMPLETED, FAILED or CANCELLED (<i>: index, or "-")
#   jobs/<id>/task-<i>.pid     the task's process group (the batch script runs in its own session)
#   jobs/<id>/task-<i>.steps   the pids of the processes srun started in it
#   jobs/<id>/task-<i>.start   start and end times (seconds since the epoch), and the exit code,
#   jobs/<id>/task-<i>.end     so that a test can tell how many tasks ran at once
#   jobs/<id>/task-<i>.exit
#
# State changes happen under flock on jobs/<id>/lock, so scancel and a finishing task never race.

FAKE_SLURM_DIR="${FAKE_SLURM_DIR:-${TMPDIR:-/tmp}/fake-slurm-$(id -u)}"
FAKE_SLURM_BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"  # this folder: sbatch, srun, ...
FAKE_SLURM_HOST="$(hostname -s 2>/dev/null || echo localhost)"

fake_die() {  # the way SLURM's commands complain: "<command>: error: ...", exit 1
    echo "$(basename "$0"): error: $*" >&2
    exit 1
}

fake_option() {  # fake_option <job dir> <key> [default]: the last value given for an sbatch option
    local value
    value="$(sed -n "s/^$2=//p" "$1/options" | tail -n 1)"
    echo "${value:-${3:-}}"
}

fake_task_id() {  # fake_task_id <job id> <index>: the JobID sacct prints ("<id>_<index>", or "<id>")
    if [[ "$2" == "-" ]]; then echo "$1"; else echo "$1_$2"; fi
}

fake_expand() {  # fake_expand <pattern> <step task id>: SLURM's filename patterns (%j %A %a %t %N %x %u %%)
    local out="${1//%%/$'\x01'}"
    out="${out//%j/${SLURM_JOB_ID:-}}"
    out="${out//%A/${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-}}}"
    out="${out//%a/${SLURM_ARRAY_TASK_ID:-4294967294}}"
    out="${out//%t/$2}"
    out="${out//%N/$FAKE_SLURM_HOST}"
    out="${out//%x/${SLURM_JOB_NAME:-}}"
    out="${out//%u/$(id -un)}"
    echo "${out//$'\x01'/%}"
}

fake_run_task() {  # fake_run_task <job dir> <index>: one task, in the background of the dispatcher
    local job="$1" index="$2" id pid rc state out err
    id="$(basename "$job")"
    {
        flock 9
        [[ "$(< "$job/task-$index.state")" == PENDING ]] || exit 0  # cancelled before it started
        # what a compute node gives the batch script: the submitter's environment (--export=ALL,
        # sbatch's default) and SLURM's variables; submitit reads the job's identity from these
        local ntasks=$(( $(fake_option "$job" nodes 1) * $(fake_option "$job" ntasks-per-node 1) ))
        export SLURM_JOB_ID="$id" SLURM_JOBID="$id" SLURM_JOB_NAME="$(fake_option "$job" job-name sbatch)"
        if [[ "$index" != "-" ]]; then
            SLURM_JOB_ID=$(( id + index )); SLURM_JOBID="$SLURM_JOB_ID"  # each array task has an id of its own
            export SLURM_ARRAY_JOB_ID="$id" SLURM_ARRAY_TASK_ID="$index"
            export SLURM_ARRAY_TASK_COUNT="$(wc -w < "$job/tasks")"
        fi
        export SLURM_JOB_NODELIST="$FAKE_SLURM_HOST" SLURM_NODELIST="$FAKE_SLURM_HOST" SLURMD_NODENAME="$FAKE_SLURM_HOST"
        export SLURM_JOB_NUM_NODES=1 SLURM_NNODES=1 SLURM_NTASKS="$ntasks" SLURM_NPROCS="$ntasks"
        export SLURM_NTASKS_PER_NODE="$ntasks" SLURM_NODEID=0 SLURM_CLUSTER_NAME=fake
        export SLURM_JOB_PARTITION="$(fake_option "$job" partition fake)"
        export SLURM_SUBMIT_DIR="$(< "$job/cwd")" SLURM_SUBMIT_HOST="$FAKE_SLURM_HOST"
        export SLURM_CPUS_PER_TASK="$(fake_option "$job" cpus-per-task 1)"
        if [[ "$index" == "-" ]]; then out=slurm-%j.out; else out=slurm-%A_%a.out; fi
        out="$(fake_expand "$(fake_option "$job" output "$out")" 0)"
        err="$(fake_expand "$(fake_option "$job" error "$out")" 0)"
        if ! mkdir -p "$(dirname "$out")" "$(dirname "$err")" || ! cd "$SLURM_SUBMIT_DIR"; then
            echo FAILED > "$job/task-$index.state"  # as SLURM does when it cannot open the output file
            exit 1
        fi
        # --export: ALL (the default) keeps the submitter's environment; NONE, or a list without
        # ALL, starts from an empty one (but SLURM's variables); NAME=value items are added
        local -a environment=(env) items
        local item name
        IFS=, read -ra items <<< "$(fake_option "$job" export ALL)"
        if [[ "${items[0]:-ALL}" != ALL ]]; then
            environment=(env -i "HOME=$HOME" "USER=$(id -un)" "PATH=$FAKE_SLURM_BIN:/usr/bin:/bin")
            for name in $(compgen -e | grep '^SLURM'); do environment+=("$name=${!name}"); done
        fi
        for item in "${items[@]}"; do
            case "$item" in
                ALL|NONE) ;;
                *=*) environment+=("$item") ;;
                *) [[ -v "$item" ]] && environment+=("$item=${!item}") ;;
            esac
        done
        # its own session, so that scancel can signal the whole process group
        setsid "${environment[@]}" "$BASH" "$job/script.sh" < /dev/null >> "$out" 2>> "$err" 9>&- &
        pid=$!
        echo "$pid" > "$job/task-$index.pid"
        date +%s.%N > "$job/task-$index.start"
        echo RUNNING > "$job/task-$index.state"
    } 9> "$job/lock"
    wait "$pid"
    rc=$?
    {
        flock 9
        date +%s.%N > "$job/task-$index.end"
        echo "$rc" > "$job/task-$index.exit"
        state="$(< "$job/task-$index.state")"
        if [[ "$state" == RUNNING ]]; then
            if (( rc == 0 )); then echo COMPLETED; else echo FAILED; fi > "$job/task-$index.state"
        fi
    } 9> "$job/lock"
}

fake_dispatch() {  # fake_dispatch <job dir>: start the tasks, at most %P of them at once
    local job="$1" limit index
    limit="$(< "$job/parallelism")"
    for index in $(< "$job/tasks"); do
        while (( $(grep -lx RUNNING "$job"/task-*.state 2>/dev/null | wc -l) >= limit )); do sleep 0.1; done
        fake_run_task "$job" "$index" &
        while [[ "$(< "$job/task-$index.state")" == PENDING ]]; do sleep 0.02; done  # started (or cancelled)
    done
    wait
}
