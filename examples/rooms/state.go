package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// State is a room's state as every member sees it: a small shared board, a
// version that grows by one with every change, and the last move as it was
// sent. It is what the old design answered on GET /rooms/{id}/state and what
// is now published to rooms/{id} on every change.
type State struct {
	Room      string          `json:"room"`
	Version   uint64          `json:"version"`
	Board     [9]string       `json:"board"` // 3×3 cells, "" (empty), "X" or "O"
	Moves     uint64          `json:"moves"` // moves that marked a cell
	LastMove  json.RawMessage `json:"last_move,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Move is a change to a room. Cell and Mark are the board's; a move may carry
// anything else (who played, a client's timestamp), kept as sent in the
// state's last_move. A move without a cell changes no cell but is still a new
// version: `herald bench` sends such moves, {"seq":N,"ts":T}.
type Move struct {
	Cell *int   `json:"cell"`
	Mark string `json:"mark"`
}

var errBadMove = errors.New("bad move")

// apply returns the state after m, whose raw JSON is raw. Marking a cell of a
// full board clears the board first, so a simulated game goes on for ever.
func (s State) apply(m Move, raw json.RawMessage, now time.Time) (State, error) {
	if m.Cell != nil {
		if *m.Cell < 0 || *m.Cell >= len(s.Board) {
			return s, fmt.Errorf("%w: cell %d is not 0..8", errBadMove, *m.Cell)
		}
		if m.Mark != "X" && m.Mark != "O" {
			return s, fmt.Errorf("%w: mark %q is not X or O", errBadMove, m.Mark)
		}
		if s.full() {
			s.Board = [9]string{}
		}
		s.Board[*m.Cell] = m.Mark
		s.Moves++
	}
	s.Version++
	s.LastMove = raw
	s.UpdatedAt = now.UTC()
	return s, nil
}

func (s State) full() bool {
	for _, c := range s.Board {
		if c == "" {
			return false
		}
	}
	return true
}

// room holds one room's state. mu is held from applying a move until its
// state is published, so the versions reach the topic in order; the encoded
// state is read without it, so polls never wait for a publish.
type room struct {
	mu      sync.Mutex
	state   State
	encoded atomic.Pointer[[]byte] // state, encoded: what GET /rooms/{id}/state answers
}

// rooms is every room, created by its first move.
type rooms struct {
	mu  sync.RWMutex
	m   map[string]*room
	max int
}

var errTooManyRooms = errors.New("too many rooms")

func newRooms(max int) *rooms { return &rooms{m: make(map[string]*room), max: max} }

func (rs *rooms) get(id string) *room {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	return rs.m[id]
}

func (rs *rooms) getOrCreate(id string) (*room, error) {
	if r := rs.get(id); r != nil {
		return r, nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.m[id]; r != nil {
		return r, nil
	}
	if len(rs.m) >= rs.max {
		return nil, errTooManyRooms
	}
	r := &room{state: State{Room: id}}
	rs.m[id] = r
	return r, nil
}

// validRoomID: the topic rooms/{id} must be a valid Herald topic (1–256 bytes
// of A-Z a-z 0-9 . _ ~ : / @ + -).
func validRoomID(id string) bool {
	if id == "" || len(id) > 200 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '~', c == ':', c == '/', c == '@', c == '+', c == '-':
		default:
			return false
		}
	}
	return true
}
