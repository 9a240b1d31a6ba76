package core

// agentList is an intrusive FIFO of agents with the same number of free slots.
type agentList struct {
	head, tail *agentRecord
	n          int
}

func (l *agentList) pushBack(a *agentRecord) {
	a.idxPrev, a.idxNext = l.tail, nil
	if l.tail != nil {
		l.tail.idxNext = a
	} else {
		l.head = a
	}
	l.tail = a
	l.n++
}

func (l *agentList) remove(a *agentRecord) {
	if a.idxPrev != nil {
		a.idxPrev.idxNext = a.idxNext
	} else {
		l.head = a.idxNext
	}
	if a.idxNext != nil {
		a.idxNext.idxPrev = a.idxPrev
	} else {
		l.tail = a.idxPrev
	}
	a.idxPrev, a.idxNext = nil, nil
	l.n--
}

// domainIndex buckets a domain's eligible agents by free slots, so that the
// agent with the most free slots (load spreading) is found in O(1) amortized
// rather than by scanning the fleet. Only agents that can take work now are
// indexed: connected, not quarantined, not stopping, at least one free slot.
type domainIndex struct {
	buckets   []agentList // by free slots; buckets[0] unused
	maxFree   int         // no agent has more free slots than this
	freeTotal int         // free slots of indexed agents
}

func (ix *domainIndex) insert(a *agentRecord) {
	free := a.free()
	if !(!a.indexed && free > 0) {
		failf("index: insert %s indexed=%v free=%d", a.id, a.indexed, free)
	}
	for len(ix.buckets) <= free {
		ix.buckets = append(ix.buckets, agentList{})
	}
	ix.buckets[free].pushBack(a)
	a.indexed, a.idxFree = true, free
	ix.maxFree = max(ix.maxFree, free)
	ix.freeTotal += free
}

func (ix *domainIndex) remove(a *agentRecord) {
	if !a.indexed {
		return
	}
	ix.buckets[a.idxFree].remove(a)
	ix.freeTotal -= a.idxFree
	a.indexed, a.idxFree = false, 0
}

// best returns the indexed agent with the most free slots that exclude does
// not reject, or nil. Among equals the one indexed longest ago wins, which
// rotates work across the fleet.
func (ix *domainIndex) best(exclude func(*agentRecord) bool) *agentRecord {
	for ix.maxFree > 0 && ix.buckets[ix.maxFree].n == 0 {
		ix.maxFree--
	}
	for f := ix.maxFree; f > 0; f-- {
		for a := ix.buckets[f].head; a != nil; a = a.idxNext {
			if exclude == nil || !exclude(a) {
				return a
			}
		}
	}
	return nil
}
