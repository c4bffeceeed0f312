# Sourced by examples/run_tiny_cpu.sh and examples/smoke_gpu.sh: the tiny assets both runs train on.
#
#   build_tiny_assets OUT_DIR ROWS TAG
#
# Warm-starts the tiny Qwen2.5-VL policy that speaks the <box> zoom protocol (verl_ext/testing/tiny_policy.py,
# about a minute on CPU) into OUT_DIR/model, writes ROWS image VQA rows to OUT_DIR/data/train.parquet, and
# sets MIN_PIXELS MAX_PIXELS (the tiny processor's bounds, which the dataset hook must use) and PROMPT_LENGTH
# RESPONSE_LENGTH (the token budgets the policy was warm-started with). Uses $PYTHON; exits on failure.
build_tiny_assets() {
    local out_dir=$1 rows=$2 tag=$3 start
    mkdir -p "$out_dir"
    start=$(date +%s)
    echo "[$tag] warm-starting the tiny policy (log: $out_dir/tiny_policy.log)"
    "$PYTHON" -m verl_ext.testing.tiny_policy --out "$out_dir/model" >"$out_dir/tiny_policy.log" 2>&1 || {
        echo "[$tag] FAILED: warm start; last lines of $out_dir/tiny_policy.log:" >&2
        tail -n 40 "$out_dir/tiny_policy.log" >&2
        exit 1
    }
    grep -a "^\[tiny_policy\]" "$out_dir/tiny_policy.log" | tail -n 2
    echo "[$tag] tiny policy: done in $(($(date +%s) - start)) s"
    "$PYTHON" -m verl_ext.testing.tiny_vqa --out "$out_dir/data" --rows "$rows" >/dev/null
    read -r MIN_PIXELS MAX_PIXELS PROMPT_LENGTH RESPONSE_LENGTH < <("$PYTHON" -c \
        "from verl_ext.testing.tiny_policy import TINY_MIN_PIXELS, TINY_MAX_PIXELS, PROMPT_LENGTH, RESPONSE_LENGTH
print(TINY_MIN_PIXELS, TINY_MAX_PIXELS, PROMPT_LENGTH, RESPONSE_LENGTH)")
}
