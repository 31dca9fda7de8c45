"""`ladderlab train --config configs/train_gpu.py`: the OLMo ladder's 190M shape (d 768, 12 layers) on one GPU,
bf16 compute and fp32 params, scanned layers with remat, byte-level. Length and hyperparameters follow the OLMo
ladder's formulas of N (non-embedding parameters): 1xC = 20 N tokens, LR 0.0047 (N/1.08e8)^(-1/3), N tokens of warm-up, cosine to 10%."""

from ladderlab.data.config import DataConfig
from ladderlab.ladders.run.config import TrainConfig
from ladderlab.model.config import ModelConfig
from ladderlab.model.counts import param_counts

MODEL = ModelConfig(vocab_size=384, d_model=768, n_layers=12, n_heads=12, d_ff=3072, qk_norm=True, norm_after=True,
                    rope_theta=500_000.0, compute_dtype="auto",
                    # as benchmarks/device_check.py measures MFU: one scanned block recomputed without its
                    # batch-free matmuls, cuDNN attention (attention="auto"), a chunked output projection + loss
                    scan_layers=True, remat=True, remat_policy="dots_with_no_batch_dims_saveable")
N = param_counts(MODEL)["non_embedding"]
BATCH, SEQ = 128, 2048

config = TrainConfig(
    model=MODEL,
    data=DataConfig(corpus="demo", tokenizer="byte", seq_len=SEQ, eval_tokens=1 << 20),
    run_dir="runs/gpu_190m",
    mesh=(1, -1, 1),
    batch_size=BATCH,
    grad_accum=8,  # 16 sequences per micro-batch fit an 80 GB GPU
    steps=20 * N // (BATCH * SEQ),
    lr=0.0047 * (N / 1.08e8) ** (-1 / 3),
    warmup_steps=N // (BATCH * SEQ),
    schedule="cosine",
    eval_every=1000,
    checkpoint_every=1000,
    keep_last=2,
    keep_every=5000,
    log_every=10,
)
