//! `torch.topk(x, k, largest=True, sorted=True)` on the CPU, tie order included.
//!
//! PyTorch's CPU kernel (`ATen/native/TopKImpl.h`, `topk_impl_loop`) pairs each value with its
//! index and runs `std::partial_sort` when `k * 64 <= n`, otherwise `std::nth_element` followed by
//! `std::sort` of the first `k - 1` elements, with the comparator "x is NaN and y is not, or
//! x > y". Neither algorithm is stable, so equal values come out in an order fixed by libstdc++'s
//! implementation (e.g. `topk([0.25; 4], 2)` gives indices `[2, 3]`). Routing must pick the same
//! experts as transformers when router probabilities tie, so this module ports those libstdc++
//! algorithms (`__introselect`, `__introsort_loop`, `__insertion_sort`, the heap functions)
//! step by step. GPU PyTorch orders ties differently; the reference here is the CPU.

/// One `(value, index)` pair, as the kernel's `elem_t`.
type Elem = (f32, usize);

/// The kernel's comparator for `largest=True`.
fn comp(x: &Elem, y: &Elem) -> bool {
    (x.0.is_nan() && !y.0.is_nan()) || x.0 > y.0
}

/// The `k` largest of `values` with their indices, ordered as `torch.topk` on the CPU orders them.
///
/// `k` larger than `values.len()` is clamped.
pub fn torch_topk(values: &[f32], k: usize) -> Vec<(f32, usize)> {
    let n = values.len();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let mut queue: Vec<Elem> = values.iter().copied().zip(0..).collect();
    if k * 64 <= n {
        partial_sort(&mut queue, 0, k, n);
    } else {
        nth_element(&mut queue, 0, k - 1, n);
        sort(&mut queue, 0, k - 1);
    }
    queue.truncate(k);
    queue
}

/// `floor(log2(n))` for `n > 0` (libstdc++'s `__lg`).
fn lg(n: usize) -> usize {
    (usize::BITS - 1 - n.leading_zeros()) as usize
}

/// `std::nth_element(first, nth, last)`.
fn nth_element(v: &mut [Elem], first: usize, nth: usize, last: usize) {
    if first == last || nth == last {
        return;
    }
    introselect(v, first, nth, last, lg(last - first) * 2);
}

fn introselect(v: &mut [Elem], mut first: usize, nth: usize, mut last: usize, mut depth: usize) {
    while last - first > 3 {
        if depth == 0 {
            heap_select(v, first, nth + 1, last);
            v.swap(first, nth);
            return;
        }
        depth -= 1;
        let cut = unguarded_partition_pivot(v, first, last);
        if cut <= nth {
            first = cut;
        } else {
            last = cut;
        }
    }
    insertion_sort(v, first, last);
}

/// `std::sort(first, last)`: introsort, then the final insertion sort.
fn sort(v: &mut [Elem], first: usize, last: usize) {
    if first == last {
        return;
    }
    introsort_loop(v, first, last, lg(last - first) * 2);
    final_insertion_sort(v, first, last);
}

const THRESHOLD: usize = 16;

fn introsort_loop(v: &mut [Elem], first: usize, mut last: usize, mut depth: usize) {
    while last - first > THRESHOLD {
        if depth == 0 {
            partial_sort(v, first, last, last);
            return;
        }
        depth -= 1;
        let cut = unguarded_partition_pivot(v, first, last);
        introsort_loop(v, cut, last, depth);
        last = cut;
    }
}

fn final_insertion_sort(v: &mut [Elem], first: usize, last: usize) {
    if last - first > THRESHOLD {
        insertion_sort(v, first, first + THRESHOLD);
        for i in first + THRESHOLD..last {
            unguarded_linear_insert(v, i);
        }
    } else {
        insertion_sort(v, first, last);
    }
}

fn insertion_sort(v: &mut [Elem], first: usize, last: usize) {
    if first == last {
        return;
    }
    for i in first + 1..last {
        if comp(&v[i], &v[first]) {
            let val = v[i];
            v.copy_within(first..i, first + 1);
            v[first] = val;
        } else {
            unguarded_linear_insert(v, i);
        }
    }
}

fn unguarded_linear_insert(v: &mut [Elem], mut last: usize) {
    let val = v[last];
    let mut next = last - 1;
    while comp(&val, &v[next]) {
        v[last] = v[next];
        last = next;
        next -= 1;
    }
    v[last] = val;
}

fn unguarded_partition_pivot(v: &mut [Elem], first: usize, last: usize) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1);
    unguarded_partition(v, first + 1, last, first)
}

fn move_median_to_first(v: &mut [Elem], result: usize, a: usize, b: usize, c: usize) {
    let pick = if comp(&v[a], &v[b]) {
        if comp(&v[b], &v[c]) {
            b
        } else if comp(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if comp(&v[a], &v[c]) {
        a
    } else if comp(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(result, pick);
}

fn unguarded_partition(v: &mut [Elem], mut first: usize, mut last: usize, pivot: usize) -> usize {
    loop {
        while comp(&v[first], &v[pivot]) {
            first += 1;
        }
        last -= 1;
        while comp(&v[pivot], &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

/// `std::partial_sort(first, middle, last)`.
fn partial_sort(v: &mut [Elem], first: usize, middle: usize, last: usize) {
    heap_select(v, first, middle, last);
    sort_heap(v, first, middle);
}

fn heap_select(v: &mut [Elem], first: usize, middle: usize, last: usize) {
    make_heap(v, first, middle);
    for i in middle..last {
        if comp(&v[i], &v[first]) {
            pop_heap(v, first, middle, i);
        }
    }
}

fn sort_heap(v: &mut [Elem], first: usize, mut last: usize) {
    while last - first > 1 {
        last -= 1;
        pop_heap(v, first, last, last);
    }
}

fn make_heap(v: &mut [Elem], first: usize, last: usize) {
    let len = last - first;
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = v[first + parent];
        adjust_heap(v, first, parent, len, value);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

fn pop_heap(v: &mut [Elem], first: usize, last: usize, result: usize) {
    let value = v[result];
    v[result] = v[first];
    adjust_heap(v, first, 0, last - first, value);
}

fn adjust_heap(v: &mut [Elem], first: usize, mut hole: usize, len: usize, value: Elem) {
    let top = hole;
    let mut second = hole;
    while second < (len - 1) / 2 {
        second = 2 * (second + 1);
        if comp(&v[first + second], &v[first + second - 1]) {
            second -= 1;
        }
        v[first + hole] = v[first + second];
        hole = second;
    }
    if len & 1 == 0 && second == (len - 2) / 2 {
        second = 2 * (second + 1);
        v[first + hole] = v[first + second - 1];
        hole = second - 1;
    }
    push_heap(v, first, hole, top, value);
}

fn push_heap(v: &mut [Elem], first: usize, mut hole: usize, top: usize, value: Elem) {
    while hole > top {
        let parent = (hole - 1) / 2;
        if !comp(&v[first + parent], &value) {
            break;
        }
        v[first + hole] = v[first + parent];
        hole = parent;
    }
    v[first + hole] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(values: &[f32], k: usize) -> Vec<usize> {
        torch_topk(values, k).into_iter().map(|(_, i)| i).collect()
    }

    #[test]
    fn matches_torch_cpu_on_ties() {
        // Values printed by torch 2.x on the CPU.
        assert_eq!(indices(&[0.25; 4], 2), vec![2, 3]);
        assert_eq!(indices(&[0.1, 0.3, 0.3, 0.3], 2), vec![2, 3]);
        assert_eq!(indices(&[0.3, 0.1, 0.3, 0.3], 2), vec![2, 3]);
        assert_eq!(indices(&[0.1, 0.4, 0.1, 0.4], 2), vec![1, 3]);
        assert_eq!(indices(&[0.0; 60], 4), vec![39, 40, 41, 38]);
        assert_eq!(indices(&[0.0; 8], 4), vec![6, 5, 4, 7]);
    }

    #[test]
    fn distinct_values_are_sorted_descending() {
        let values = [0.3, -1.0, 2.5, 0.7, 9.0, 0.0];
        assert_eq!(indices(&values, 3), vec![4, 2, 3]);
        assert_eq!(indices(&values, 6), vec![4, 2, 3, 0, 5, 1]);
    }

    #[test]
    fn nan_is_largest() {
        assert_eq!(indices(&[1.0, f32::NAN, 2.0], 1), vec![1]);
    }
}
