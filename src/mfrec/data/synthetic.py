"""A synthetic dataset with planted low-rank preferences, for tests, demos and benchmarks offline.

Generative model (all draws from one seeded generator, so the same seed gives the same dataset):

* true factors ``p_u, q_i ~ N(0, I_f) / f^{1/4}``, so the affinity ``s_ui = p_u . q_i`` has variance ~1;
* power-law item popularity ``w_i = rank_i^{-popularity_exponent}`` (random ranks) and user activity
  ``n_u ~ rank_u^{-activity_exponent}``, scaled so that ``sum n_u ~ density * n_users * n_items``;
* exposure: user ``u`` interacts with ``n_u`` distinct items drawn without replacement with probability
  proportional to ``w_i exp(exposure * s_ui)`` (Gumbel top-k), so *which* items a user touches carries the
  preference signal (implicit feedback);
* rating ``r_ui = clip(round(mu + b_u + b_i + rating_scale * s_ui + eps), 1, 5)`` with ``eps ~ N(0, noise^2)``,
  ``b_u, b_i ~ N(0, 0.4^2)`` (popular items a little higher) and ``mu`` centring the observed mean near 3.5;
* event log: every pair has a ``view`` with a watch fraction ``sigmoid(1.5 s_ui + 0.5 + N(0, 0.5^2))``,
  then a ``click`` with probability ``sigmoid(1.5 s_ui - 0.5)`` and, after a click, a ``purchase`` with
  probability ``sigmoid(2 s_ui - 2)``;
* attributes carrying signal: item genre ``k`` is present when ``q_ik`` is large (one genre per latent
  dimension), item year grows with ``q_i0``, user age (and age group) grows with ``p_u1``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec._params import check_float, check_int
from mfrec._random import SeedLike, rng
from mfrec.data.dataset import Dataset
from mfrec.data.interactions import Interactions

__all__ = ["synthetic", "GENRES", "AGE_GROUPS"]

GENRES = ("Action", "Comedy", "Drama", "Documentary", "Horror", "Romance", "SciFi", "Animation",
          "Thriller", "Western", "Musical", "Crime")
AGE_GROUPS = ("<18", "18-24", "25-34", "35-44", "45-54", "55+")
_AGE_EDGES = np.array([18, 25, 35, 45, 55])
_EPOCH_2020 = 1_577_836_800  # 2020-01-01T00:00:00Z


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def synthetic(
    n_users: int = 1000,
    n_items: int = 500,
    factors: int = 8,
    density: float = 0.05,
    seed: SeedLike = 0,
    *,
    popularity_exponent: float = 1.0,
    activity_exponent: float = 0.8,
    exposure: float = 2.5,
    noise: float = 0.5,
    rating_scale: float = 0.9,
    min_user_interactions: int = 5,
    days: int = 365,
) -> Dataset:
    """Generate the synthetic dataset (see the module docstring for the model).

    Parameters
    ----------
    n_users, n_items : int
        Matrix shape; every user and every item has at least one interaction.
    factors : int
        Rank f of the planted preferences.
    density : float in (0, 1]
        Target fraction of (user, item) pairs observed (approximate: activity is clipped to
        ``[min_user_interactions, n_items]``).
    seed : int, SeedSequence, Generator or None
        Same seed, same dataset.
    popularity_exponent, activity_exponent : float >= 0
        Power-law exponents of item popularity and user activity (0 = uniform).
    exposure : float >= 0
        How strongly affinity drives which items a user interacts with.
    noise : float >= 0
        Standard deviation of the rating noise.
    rating_scale : float >= 0
        Weight of the affinity in the rating.
    min_user_interactions : int >= 1
        Fewest interactions per user.
    days : int >= 1
        Span of the event timestamps, starting 2020-01-01 UTC.

    Returns
    -------
    Dataset
        ``kind="explicit"``; ``interactions`` holds the 1-5 ratings (float32) with view timestamps, shape
        ``(n_users, n_items)``, user ids ``1..n_users``, item ids ``1..n_items``; ``events`` the log
        (``user, item, timestamp`` datetime64[s], ``event`` in view/click/purchase, ``fraction`` float
        for views, NaN otherwise); ``true_user_factors`` ``(n_users, factors)`` and ``true_item_factors``
        ``(n_items, factors)`` float64 with ``p_u . q_i = s_ui``; ``user_attributes`` (age, age_group),
        ``item_attributes`` (title, year, genres) and their specs; ``item_titles``.
    """
    n_users = check_int("n_users", n_users, 1)
    n_items = check_int("n_items", n_items, 1)
    factors = check_int("factors", factors, 1)
    density = check_float("density", density, 0.0, 1.0, strict_min=True)
    popularity_exponent = check_float("popularity_exponent", popularity_exponent, 0.0)
    activity_exponent = check_float("activity_exponent", activity_exponent, 0.0)
    exposure = check_float("exposure", exposure, 0.0)
    noise = check_float("noise", noise, 0.0)
    rating_scale = check_float("rating_scale", rating_scale, 0.0)
    min_user_interactions = check_int("min_user_interactions", min_user_interactions, 1)
    days = check_int("days", days, 1)
    g = rng(seed)

    # planted factors: entries N(0, f^-1/2) so that s = p.q has unit variance
    P = g.standard_normal((n_users, factors)) / factors**0.25
    Q = g.standard_normal((n_items, factors)) / factors**0.25

    # power-law popularity and activity
    log_pop = -popularity_exponent * np.log(g.permutation(n_items) + 1.0)
    activity = (g.permutation(n_users) + 1.0) ** -activity_exponent
    target = density * n_users * n_items
    lo = min(min_user_interactions, n_items)
    hi = n_items if density > 0.5 else max(lo, n_items // 2)  # the heaviest users see at most half the items
    scale = target / activity.sum()
    for _ in range(20):  # rescale so that the clipped counts still add up to the target
        counts = np.clip(np.rint(activity * scale), lo, hi)
        total = counts.sum()
        if abs(total - target) <= 0.005 * target or total >= hi * n_users:
            break
        scale *= target / max(total, 1.0)
    counts = counts.astype(np.int64)

    # exposure: Gumbel top-n_u of log w_i + exposure * s_ui, in blocks of users (heaviest first, so
    # each block's partial sort is only as deep as its heaviest user) to bound memory and time
    users_list, items_list = [], []
    by_activity = np.argsort(-counts, kind="stable")
    block = max(1, 4_000_000 // n_items)
    for start in range(0, n_users, block):
        rows_u = by_activity[start : start + block]
        uniform = g.random((rows_u.size, n_items), dtype=np.float32)
        with np.errstate(divide="ignore"):
            gumbel = -np.log(-np.log(uniform))  # standard Gumbel noise (u = 0 gives -inf: never drawn)
        keys = (log_pop[None, :] + exposure * (P[rows_u] @ Q.T)).astype(np.float32) + gumbel
        k = int(counts[rows_u].max())
        if k < n_items:
            top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(n_items), keys.shape)
        top_keys = np.take_along_axis(keys, top, axis=1)
        order = np.take_along_axis(top, np.argsort(-top_keys, axis=1, kind="stable"), axis=1)
        rows, ranks = np.nonzero(np.arange(k)[None, :] < counts[rows_u, None])
        users_list.append(rows_u[rows])
        items_list.append(order[rows, ranks])
    users = np.concatenate(users_list)
    items = np.concatenate(items_list)
    # every item gets at least one interaction: give each unseen item to a random user
    unseen = np.flatnonzero(np.bincount(items, minlength=n_items) == 0)
    if unseen.size:
        users = np.concatenate([users, g.integers(0, n_users, unseen.size)])
        items = np.concatenate([items, unseen])
    n = users.size
    s = np.einsum("nf,nf->n", P[users], Q[items])

    # ratings
    b_user = g.normal(0.0, 0.4, n_users)
    b_item = g.normal(0.0, 0.4, n_items) + 0.15 * (log_pop - log_pop.mean()) / (log_pop.std() + 1e-12)
    # mu centres the observed ratings near 3.5 (exposure favours high affinity: selection bias)
    mu = 3.5 - rating_scale * float(s.mean()) - float(b_item[items].mean())
    raw = mu + b_user[users] + b_item[items] + rating_scale * s + g.normal(0.0, noise, n)
    ratings = np.clip(np.rint(raw), 1.0, 5.0)

    # event log: view (+ watch fraction), click, purchase
    t_view = _EPOCH_2020 + g.integers(0, days * 86_400, n)
    fraction = np.round(_sigmoid(1.5 * s + 0.5 + g.normal(0.0, 0.5, n)), 3)
    clicked = g.random(n) < _sigmoid(1.5 * s - 0.5)
    t_click = t_view + g.integers(1, 600, n)
    bought = clicked & (g.random(n) < _sigmoid(2.0 * s - 2.0))
    t_buy = t_click + g.integers(60, 86_400, n)
    user_ids = np.arange(1, n_users + 1, dtype=np.int64)
    item_ids = np.arange(1, n_items + 1, dtype=np.int64)
    ev_user = np.concatenate([users, users[clicked], users[bought]])
    ev_item = np.concatenate([items, items[clicked], items[bought]])
    ev_time = np.concatenate([t_view, t_click[clicked], t_buy[bought]])
    ev_code = np.repeat(np.arange(3, dtype=np.int8), [n, int(clicked.sum()), int(bought.sum())])
    ev_fraction = np.concatenate([fraction, np.full(int(clicked.sum() + bought.sum()), np.nan)])
    chrono = np.lexsort((ev_item, ev_user, ev_time))  # by time, then user, then item
    events = pd.DataFrame(
        {
            "user": user_ids[ev_user[chrono]],
            "item": item_ids[ev_item[chrono]],
            "timestamp": ev_time[chrono].astype("datetime64[s]"),
            "event": pd.Categorical.from_codes(ev_code[chrono], categories=["view", "click", "purchase"]),
            "fraction": ev_fraction[chrono],
        }
    )

    frame = pd.DataFrame(
        {"user": user_ids[users], "item": item_ids[items], "rating": ratings, "timestamp": t_view}
    )
    interactions = Interactions.from_frame(
        frame, value="rating", timestamp="timestamp", duplicates="error", user_ids=user_ids, item_ids=item_ids
    )
    interactions.source = "synthetic"

    # attributes that carry signal
    names = [GENRES[k] if k < len(GENRES) else f"Genre{k}" for k in range(factors)]
    threshold = 0.8 / factors**0.25  # q_ik > 0.8 sd: about 21% of items per genre
    flags = Q > threshold
    flags[np.arange(n_items), np.argmax(Q, axis=1)] = True  # at least one genre each
    name_arr = np.array(names, dtype=object)
    genres = ["|".join(name_arr[row]) for row in flags]
    year = np.clip(np.rint(2000 + 6.0 * Q[:, 0] * factors**0.25 + g.normal(0.0, 3.0, n_items)), 1950, 2024)
    titles = pd.Series([f"Item {i} ({int(y)})" for i, y in zip(item_ids, year, strict=True)],
                       index=pd.Index(item_ids, name="item"), name="title")
    item_attributes = pd.DataFrame({"title": titles.to_numpy(), "year": year, "genres": genres},
                                   index=titles.index)
    age = np.clip(np.rint(38 + 10.0 * P[:, 1 % factors] * factors**0.25 + g.normal(0.0, 4.0, n_users)), 13, 85)
    age_group = np.array(AGE_GROUPS, dtype=object)[np.searchsorted(_AGE_EDGES, age, side="right")]
    user_attributes = pd.DataFrame({"age": age, "age_group": age_group}, index=pd.Index(user_ids, name="user"))

    return Dataset(
        name="synthetic",
        kind="explicit",
        interactions=interactions,
        user_attributes=user_attributes,
        item_attributes=item_attributes,
        user_attribute_spec={"categorical": ["age_group"], "numeric": ["age"]},
        item_attribute_spec={"multilabel": {"genres": "|"}, "numeric": ["year"], "text": ["title"]},
        item_titles=titles,
        events=events,
        true_user_factors=P,
        true_item_factors=Q,
        description=(
            f"synthetic: {n_users} users x {n_items} items, rank {factors}, density ~{density:g}, seed {seed!r}"
        ),
    )


def community_interactions(n_communities: int = 4, users_per: int = 1000, items_per: int = 250,
                           per_user: int = 10, ratings: bool = False, seed: SeedLike = 0) -> Interactions:
    """Users in ``n_communities`` groups, each using only its own group's items: data with locality.

    Community ``c`` holds users ``c * users_per ...`` and items ``c * items_per ...`` (integer ids in that order);
    every user touches ``per_user`` distinct items of its community, drawn uniformly (values 1, or ratings 1-5
    with ``ratings``). Every community has the same number of entries, so the nnz-balanced blocks of a
    distributed fit with ``n_communities`` blocks per side fall on the community boundaries: each block then
    references one block of the other side (the best case of a sharded fit's traffic).
    """
    n_communities = check_int("n_communities", n_communities, minimum=1)
    users_per = check_int("users_per", users_per, minimum=1)
    items_per = check_int("items_per", items_per, minimum=1)
    per_user = check_int("per_user", per_user, minimum=1, maximum=items_per)
    gen = rng(seed)
    n_users = n_communities * users_per
    # per user: per_user distinct items of its community (rows with a repeat are drawn again)
    picks = gen.integers(0, items_per, (n_users, per_user))
    if 2 * per_user > items_per:  # dense rows: the first columns of random permutations
        picks = np.argsort(gen.random((n_users, items_per)), axis=1)[:, :per_user]
    while per_user > 1:
        repeat = (np.diff(np.sort(picks, axis=1), axis=1) == 0).any(axis=1)
        if not repeat.any():
            break
        picks[repeat] = gen.integers(0, items_per, (int(repeat.sum()), per_user))
    rows = np.repeat(np.arange(n_users), per_user)
    cols = (picks + (np.arange(n_users) // users_per)[:, None] * items_per).ravel()
    vals = gen.integers(1, 6, len(rows)).astype(np.float32) if ratings else np.ones(len(rows), np.float32)
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_communities * items_per))
    matrix.sort_indices()
    return Interactions(matrix, has_values=ratings)
