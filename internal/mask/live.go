package mask

import (
	"regexp/syntax"
	"slices"
	"unicode/utf8"
)

// live finds where a match might start that more input could still
// complete or extend. Go's regexp answers "where is the leftmost match"
// but not "could this text be the beginning of one"; this is a Pike VM
// over the same compiled program that keeps, for every thread still
// waiting for a rune when the text runs out, the position it started at.
// Bytes before the earliest such start are decided and can be written out
// at once, which keeps interactive output prompt without ever writing the
// first half of a secret.
type live struct {
	prog     *syntax.Prog
	cur, nxt threadSet
	starts   []int
}

type thread struct {
	pc    uint32
	start int
}

// threadSet is a sparse set of program counters, each with the earliest
// start that reached it: threads at the same instruction have the same
// future, so the earliest one stands for all.
type threadSet struct {
	sparse []uint32
	dense  []thread
}

func newThreadSet(n int) threadSet {
	return threadSet{sparse: make([]uint32, n), dense: make([]thread, 0, n)}
}

func (q *threadSet) has(pc uint32) bool {
	i := q.sparse[pc]
	return int(i) < len(q.dense) && q.dense[i].pc == pc
}

func (q *threadSet) put(pc uint32, start int) {
	q.sparse[pc] = uint32(len(q.dense))
	q.dense = append(q.dense, thread{pc, start})
}

func newLive(prog *syntax.Prog) *live {
	return &live{prog: prog, cur: newThreadSet(len(prog.Inst)), nxt: newThreadSet(len(prog.Inst))}
}

// unknownNext stands for the rune after the end of the text, which has not
// arrived yet: an empty-width assertion there (\b, $) is taken as
// satisfiable either way, so a thread is never dropped for lack of input.
const unknownNext = -2

// context is the set of empty-width conditions that hold between r1 and r2.
func context(r1, r2 rune) syntax.EmptyOp {
	if r2 != unknownNext {
		return syntax.EmptyOpContext(r1, r2)
	}
	var op syntax.EmptyOp
	for _, r := range []rune{-1, 'a', ' ', '\n'} {
		op |= syntax.EmptyOpContext(r1, r)
	}
	return op
}

// add follows the empty transitions from pc and records the threads that
// wait for a rune.
func (l *live) add(q *threadSet, pc uint32, start int, ctx syntax.EmptyOp) {
	if q.has(pc) {
		return
	}
	q.put(pc, start)
	i := &l.prog.Inst[pc]
	switch i.Op {
	case syntax.InstAlt, syntax.InstAltMatch:
		l.add(q, i.Out, start, ctx)
		l.add(q, i.Arg, start, ctx)
	case syntax.InstCapture, syntax.InstNop:
		l.add(q, i.Out, start, ctx)
	case syntax.InstEmptyWidth:
		if syntax.EmptyOp(i.Arg)&^ctx == 0 {
			l.add(q, i.Out, start, ctx)
		}
	}
}

func consumes(i *syntax.Inst, r rune) bool {
	switch i.Op {
	case syntax.InstRune:
		return i.MatchRune(r)
	case syntax.InstRune1:
		return r == i.Rune[0]
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	}
	return false
}

func waits(op syntax.InstOp) bool {
	return op == syntax.InstRune || op == syntax.InstRune1 || op == syntax.InstRuneAny || op == syntax.InstRuneAnyNotNL
}

// open returns, sorted, the start positions in text[from:] of matches
// that further input could still complete or extend, ignoring any that
// would be longer than maxLen bytes. prev is the rune before from (-1 for
// none). text must end on a complete rune. cands, when not nil, are the
// only positions where a match can start (sorted).
func (l *live) open(text []byte, from int, prev rune, maxLen int, cands []int) []int {
	l.cur.dense = l.cur.dense[:0]
	l.starts = l.starts[:0]
	r1 := prev
	for pos := from; pos < len(text); {
		if cands != nil {
			for len(cands) > 0 && cands[0] < pos {
				cands = cands[1:]
			}
			if len(l.cur.dense) == 0 {
				// Nothing runs: go straight to the next place a
				// match can start.
				if len(cands) == 0 {
					return nil
				}
				if cands[0] > pos {
					pos = cands[0]
					r1, _ = utf8.DecodeLastRune(text[:pos])
				}
			}
		}
		r2, w := utf8.DecodeRune(text[pos:])
		if cands == nil || (len(cands) > 0 && cands[0] == pos) {
			// A match may start here; threads already running have
			// priority.
			l.add(&l.cur, uint32(l.prog.Start), pos, context(r1, r2))
		}
		next := pos + w
		r3 := rune(unknownNext)
		if next < len(text) {
			r3, _ = utf8.DecodeRune(text[next:])
		}
		ctx := context(r2, r3)
		l.nxt.dense = l.nxt.dense[:0]
		for _, t := range l.cur.dense {
			if next-t.start > maxLen {
				continue
			}
			if i := &l.prog.Inst[t.pc]; consumes(i, r2) {
				l.add(&l.nxt, i.Out, t.start, ctx)
			}
		}
		l.cur, l.nxt = l.nxt, l.cur
		r1, pos = r2, next
	}
	for _, t := range l.cur.dense {
		if waits(l.prog.Inst[t.pc].Op) {
			l.starts = append(l.starts, t.start)
		}
	}
	slices.Sort(l.starts)
	return slices.Compact(l.starts)
}
