# Sourced by every stub. Appends this call's command line to the file $CRLIB_STUB_LOG names, one
# line per call (a newline inside an argument is written as \n), so a test can read what ran and with
# which arguments. $CRLIB_STUB_STATE names a directory where stubs keep what earlier calls did.
record_call() {
    local line=${0##*/} arg
    for arg in "$@"; do
        line+=" ${arg//$'\n'/\\n}"
    done
    printf '%s\n' "$line" >>"${CRLIB_STUB_LOG:?CRLIB_STUB_LOG names the call log}"
}

stub_state() {
    printf '%s/%s' "${CRLIB_STUB_STATE:?CRLIB_STUB_STATE names the stubs state directory}" "$1"
}
