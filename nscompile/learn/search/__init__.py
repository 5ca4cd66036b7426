"""NeuronSeek-TD structure search: data -> pure and interaction orders -> spec AST.

    >>> from nscompile.learn.search import NeuronSeek, search
    >>> NeuronSeek(max_order=5, rank=8).fit(X, y).structure_
    {'pure': [2], 'interact': [3], 'rank': 8, 'gates': {...}}
    >>> search(X, y, seeds=(0, 1, 2)).agreement
    1.0

Method. Stage 1 is the paper's gated dual-stream model (see `model`, `gates`, `train`);
stage 2 refits the stage-1 candidates deterministically and prunes them on a validation split
(the seed-dependent 20% of the rows). Differences from the public code: near-equal batches
(never one row); x**k and the CP products standardised with fixed training statistics and
factors drawn N(0, 1/D) (every order starts with unit variance at any D and k); a shared CP
basis with an output map (the `cp` term of the spec, so search and spec agree); every
parameter (bias included) in Adam; interaction order 1 folded into pure order 1.

Tuning notes. Everything below was measured on the synthetic benchmark with data seed 1 and
search seed 7 (examples/paper/synthetic_recovery.py reports data seed 0, search seeds 0-2, a
table these settings were never tuned on), at D = 10 (N = 2500) and D = 50 (N = 3000).

- Centring. `(x - m)**k` has every lower order, so a column is only centred when its mean is
  significantly non-zero. A fixed 3-sigma test per column is a multiple-comparisons trap: at
  D = 50 the spurious P1 of pure_v0 and of interact_v0 (data seed 0, as reported in the issue)
  both came from one column the test centred by chance (with it left alone, pure_v0 is exact).
  The test is now Bonferroni over the columns (`inputs.centring_threshold`, 1% family-wise).
- Stage 1 alone (kept = expected L0 > 0.5) does not discriminate: every gate stays above 0.9
  on all 15 formulas at every D, and the true terms range from 100% down to ~0.001% of the
  variance (hybrid_v2's 0.5*Int_2 at D = 50), so no fixed penalty separates them from spurious
  terms. Stage 2 selects; the benchmark prints the stage-1 answer beside it (PERFECT 0 of 15)
  and the summary JSON says how often stage 2 changed it. Stage 1 is now the warm start of
  stage 2 and runs 40 epochs (60 gave no better start).
- Acceptance. `val <= best * 1.1 + 2e-6` had an absolute floor tuned on a target whose noise
  was 1e-8 of its variance; with noise 0.01 of the signal the validation MSE floor is 1e-4,
  with 0.1 it is 1e-2. A removal is now judged by the paired per-row differences on the
  validation rows (`train.worse_by`): the term is kept only if the model without it is worse
  by more than 3 sigmas *and* by more than 10% of the loss. The sigmas are the larger of two
  paired tests. The mean difference over its standard error alone failed: per-row differences
  are heavy-tailed (without x**4, pure_v3's validation MSE grew 500-fold at only 3.0 standard
  errors). Wilcoxon's signed-rank test sees that at 17 sigmas, but alone it lost weak terms
  under noise (noise 0.1, D = 30: hybrid_v0's Int_2 cost 14% of the loss at 0.8 sigmas; a sign
  test, before it, lost a term worth 15%). The 10% guards against optimiser imprecision: at
  D = 50 each trial fitted a few percent above the best fit and looked "significantly" worse.
- Refits. Warm-starting each trial from the previous refit gave it 150 more L-BFGS iterations
  of fitting noise than the model it was compared with: every removal of interact_v0 at D = 50
  then looked 7% (4 sigmas) worse and all nine terms were kept. Every fit now starts from the
  stage-1 weights with the same budget. L-BFGS's default `tolerance_change` (1e-9) stopped
  hybrid_v2's fits before its Int_2 was fitted; 300 iterations instead of 150 turned
  interact_v2 and interact_v3 from NOISY to PERFECT at D = 10. 400 instead of 300 fitted the
  order-3 interactions at D = 50 closely enough that a spurious `<w1, x>` no longer helped
  (interact_v1 and interact_v2, data seed 1: {I2, I3} reaches the fit of {P1, P3, I2, I3}
  after 600 iterations, not after 300; Int_3 of non-orthogonal directions has a linear part,
  about 3/D of its variance, that P1 takes over from an unfinished fit), but the slowest
  D = 50 search then took 30 s (20 s is the budget), and 30 stage-1 epochs to pay for it
  made the fits worse: the budget stays 300, and only close calls get more (below).
- A second pass (`train.prune`). The trace of every spurious term at D = 30 (data seed 1)
  showed one of two things. (a) The first fit of all nine candidates failed or stalled
  (validation MSE 0.2, or 1e-3, where the final model reaches 1e-4), and removals judged
  against it looked costly by chance: interact_5 was kept in interact_v3 and interact_v4.
  (b) A close call, where the removal cost 10-40% at 3-4 sigmas, and 300 more iterations on
  both sides reversed it (a spurious P1 in interact_v2, P3 in hybrid_v0). So a removal
  refused at less than twice the best loss is judged again after both models got the same
  extra budget, and the terms kept before a later removal (close calls, or any term judged
  against a best model that has since become twice better) are tried again, up to three
  passes. Near the noise floor the fits also overfit (rank 8 CP terms have ~1000 weights
  for 1920 rows): continuing a fit moves its validation loss by 10-30% either way, which
  is why the close calls are refitted in pairs rather than judged more finely.
- CP starting directions (`moments`). From random N(0, 1/D) factors the order-3 and order-4
  terms at D = 50 were never found (validation MSE 1-2 on interact_v4, i.e. no fit at all, and
  the old search "found" I{4} only because every trial was equally bad). The factors now start
  at the tensor-power-method directions of the target's Hermite moments, order by order on the
  residual of the lower orders. Their overlap with the true directions is 0.9-0.98 at D = 10
  but 0.3-0.6 for order 4 at D = 50 with 2400 rows (0.28 is chance): that setting stays hard.
  Two things were checked on interact_v3 at D = 50 (data seed 1, search seeds 1 and 2, where
  its order 4 was lost) and neither helps. (a) A spectral start, the leading symmetric
  eigenmatrices of the D^2 x D^2 unfolding of the 4th Hermite moment (subspace iteration
  on matrix products, 0.6 s): its eigenvalues were not separated from the sampling noise
  and its subspace overlap with the four true directions (0.6-0.8 on two, chance on the
  others) was no better than the power method's; with 1920 fitting rows the unfolding
  is at its own limit (it needs N well above D^2 = 2500). (b) The fit, not the test,
  loses the term: `{I2, I4}` refitted from the stage-1 weights reaches a validation MSE
  of 0.07-0.09 where the noise floor is 1e-4 (the order-4 part, ~5% of the variance, is
  mostly unexplained), at rank 8 it overfits (training MSE 0.007 at 300 iterations,
  0.0006 at 1800, the validation loss rising), and at rank 1 its training loss stays at
  that of `{I2}`: the optimiser does not find the order-4 directions from this start.
  Adding the term back against the final model would keep it on one seed of two
  (3.6-4.3 and 2.9 sigmas), so no re-adding step was built.
- Exact output weights (checked, not kept). The output is linear in the pure weights, the CP
  output maps and the bias, so after each L-BFGS refit they can be solved by least squares
  given the factors (variable projection; float64 normal equations). Tuning data (data seed
  1, search seeds 0-2), PERFECT / all seeds agree: D = 50 13 / 11 without, 13 / 12 with; D =
  30 13 / 14 without, 13 / 13 with; D = 10 15 / 15 with. Solving before L-BFGS as well gave
  11 / 11 at D = 50 (a start that fits the output maps to unfinished factors threw interact_v4
  off). Precision of the linear part is not what limits the search, so refits stay L-BFGS.
- What the data can tell at D = 50 (N = 3000, noise 0.01). hybrid_v2's 0.5 * Int_2 is 1.3e-5
  of the signal's variance, 13% of the noise's (1e-4): on 480 validation rows even an oracle
  that knew w1 and w2 would see the removal at about 3.9 sigmas, and fitting the two
  directions (100 weights at rank 1, 1920 rows) costs about 5e-6 of validation loss, which
  leaves about 8% at 2.4 sigmas, below both thresholds. No test on these validation rows can
  keep that term without also keeping spurious ones; it is found at D = 10 (67% of the noise).
  Order 4 at D = 50 (interact_v3, interact_v4) is the other limit: its moment directions
  need N well above D^2 = 2500; on data seeds 2 and 3 (search seeds 0-2) interact_v4 was
  undecided on 2 of 6 searches (no fit better than a constant), interact_v3 lost its order 4 on
  2 of 6.
- Classification. Judging removals by the validation cross-entropy failed (2 of 15 at D = 10):
  near-separable classes let L-BFGS inflate the logits and a few confidently wrong rows carried
  the mean. Stage 2 judges by the Brier score (`train.row_scores`): 9 of 15.
- Speed. A refit evaluates only the terms the mask keeps, and L-BFGS optimises only the
  weights (a frozen BatchNorm's scale and shift repeat a term's scale and the bias): 2x
  faster, which paid for the 300 iterations. The frozen BatchNorms are folded into the
  weights, so an evaluation is two matrix products, and the standardised powers of the
  training rows are computed once per refit (`DualStream.hold_input`): 7.4 -> 4.5 ms per
  evaluation at D = 50, which paid for the second pass and the refined close calls.

Tuning results (data seed 1, search seed 7), PERFECT of 15: 15 at D = 10 (14 before the
mean-difference test was added to the rank test), 13 at D = 30, 12 at D = 50 (hybrid_v2's
0.5*Int_2, interact_v2's 0.5*Int_3, a spurious I3 in pure_v4); hybrid_v1 and hybrid_v3 exact
at D = 100; with noise 0.1, 14 at D = 10 and 11 at D = 30 (the weak interactions of
interact_v2, hybrid_v0, hybrid_v2, hybrid_v4 lost); two quantile classes at D = 10: 9. The
old search gave 2 at D = 50 (data seed 0). The second pass was tuned on data seed 1 with
search seeds 0-2 (PERFECT majority / all three seeds agree): at D = 30 13 / 11 before, 14 /
14 after (close calls below 1.5x); at D = 50 13 / 12 with 400 iterations and close calls
below 2x (interact_v3's order 4 lost by two seeds, hybrid_v2 missed). Close calls below 2.5x
changed nothing at D = 50; the reported settings are 300 iterations and 2x.

Modules: `gates` (hard-concrete L0 gates), `model` (the dual-stream model), `moments` (the CP
factors' starting directions), `train` (stage 1 gated training and stage 2 pruning refits),
`inputs` (validation), `estimator`
(`NeuronSeek`), `multi` (multi-seed `search`), `spec` (the result as an AST). Nothing here
imports the compiler's back half.
"""

from nscompile.learn.search.estimator import NeuronSeek
from nscompile.learn.search.multi import SearchResult, search

__all__ = ["NeuronSeek", "SearchResult", "search"]
