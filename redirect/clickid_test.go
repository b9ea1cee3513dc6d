package redirect

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"
)

var (
	testSecret  = []byte("0123456789abcdef-cluster-secret")
	testSecret2 = []byte("fedcba9876543210-next-secret")
)

func newTestMinter(t testing.TB, secrets ...[]byte) *Minter {
	t.Helper()
	if len(secrets) == 0 {
		secrets = [][]byte{testSecret}
	}
	m, err := NewMinter(secrets...)
	if err != nil {
		t.Fatalf("NewMinter: %v", err)
	}
	return m
}

func TestNewMinterRejects(t *testing.T) {
	tests := []struct {
		name    string
		secrets [][]byte
	}{
		{"none", nil},
		{"short", [][]byte{[]byte("short")}},
		{"one short of two", [][]byte{testSecret, []byte("0123456789abcde")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := NewMinter(tt.secrets...); err == nil {
				t.Errorf("NewMinter = %v, nil; want an error", m)
			}
		})
	}
}

func TestMintFormat(t *testing.T) {
	m := newTestMinter(t)
	now := time.Date(2025, 3, 4, 5, 6, 7, 891_234_567, time.UTC)
	id := m.New(now)
	if len(id) != ClickIDLen {
		t.Fatalf("len(%q) = %d, want %d", id, len(id), ClickIDLen)
	}
	if strings.Trim(id, clickIDAlphabet) != "" {
		t.Errorf("%q has characters outside %q", id, clickIDAlphabet)
	}
	if !LooksLikeClickID([]byte(id)) {
		t.Errorf("LooksLikeClickID(%q) = false", id)
	}
	got, err := ParseClickID(id)
	if err != nil {
		t.Fatalf("ParseClickID(%q): %v", id, err)
	}
	if want := now.Truncate(time.Millisecond); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("ParseClickID(%q) = %v, want %v UTC", id, got, want)
	}
	got, err = m.Verify(id)
	if err != nil || !got.Equal(now.Truncate(time.Millisecond)) {
		t.Errorf("Verify(%q) = %v, %v; want %v, nil", id, got, err, now.Truncate(time.Millisecond))
	}
}

func TestMintKnownEncoding(t *testing.T) {
	// All-zero and all-one bytes pin the bit order of the encoding.
	var raw [idRawLen]byte
	if got, want := string(appendClickID(nil, &raw)), strings.Repeat("0", 32); got != want {
		t.Errorf("encode zeros = %q, want %q", got, want)
	}
	for i := range raw {
		raw[i] = 0xff
	}
	if got, want := string(appendClickID(nil, &raw)), strings.Repeat("z", 32); got != want {
		t.Errorf("encode ones = %q, want %q", got, want)
	}
	// Time 1 ms: the 48th bit is set, that is bit 2 of character 9 (value 4).
	raw = [idRawLen]byte{5: 1}
	if got, want := string(appendClickID(nil, &raw)), "0000000004"+strings.Repeat("0", 22); got != want {
		t.Errorf("encode 1ms = %q, want %q", got, want)
	}
	var back [idRawLen]byte
	if err := decodeClickID("0000000004"+strings.Repeat("0", 22), &back); err != nil || back != raw {
		t.Errorf("decode = %x, %v; want %x", back, err, raw)
	}
}

func TestMintClamp(t *testing.T) {
	m := newTestMinter(t)
	tests := []struct {
		name string
		now  time.Time
		want time.Time
	}{
		{"before epoch", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), time.UnixMilli(0).UTC()},
		{"epoch", time.UnixMilli(0), time.UnixMilli(0).UTC()},
		{"far future", time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), time.UnixMilli(maxIDMillis).UTC()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Verify(m.New(tt.now))
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("Verify(New(%v)) = %v, %v; want %v, nil", tt.now, got, err, tt.want)
			}
		})
	}
}

func TestMintUnique(t *testing.T) {
	m := newTestMinter(t)
	now := time.Now()
	const n = 50_000
	seen := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		id := m.New(now) // same millisecond: only the random part differs
		if seen[id] {
			t.Fatalf("duplicate id %q after %d mints", id, i)
		}
		seen[id] = true
	}
}

func TestMintOrdered(t *testing.T) {
	m := newTestMinter(t)
	base := time.Date(2024, 12, 31, 23, 59, 59, 990_000_000, time.UTC)
	var ids []string
	var times []time.Time
	for i := 0; i < 500; i++ {
		// Steps of 1 ms and of larger powers of two cross every digit boundary.
		at := base.Add(time.Duration(i*i) * time.Millisecond)
		ids = append(ids, m.New(at), m.New(at.Add(time.Millisecond)))
		times = append(times, at, at.Add(time.Millisecond))
	}
	for i := 1; i < len(ids); i++ {
		a, b := times[i-1], times[i]
		if b.After(a) && ids[i-1] >= ids[i] {
			t.Errorf("id at %v (%s) does not sort before id at %v (%s)", a, ids[i-1], b, ids[i])
		}
	}
	sorted := append([]string(nil), ids...)
	sort.Strings(sorted)
	for i := 1; i < len(sorted); i++ {
		ta, _ := ParseClickID(sorted[i-1])
		tb, _ := ParseClickID(sorted[i])
		if tb.Before(ta) {
			t.Fatalf("sorted ids out of time order: %s (%v) before %s (%v)", sorted[i-1], ta, sorted[i], tb)
		}
	}
}

func TestVerifyRejectsMangled(t *testing.T) {
	m := newTestMinter(t)
	id := m.New(time.Now())
	for i := 0; i < len(id); i++ {
		for _, c := range []byte(clickIDAlphabet) {
			if c == id[i] {
				continue
			}
			mangled := id[:i] + string(c) + id[i+1:]
			if _, err := m.Verify(mangled); !errors.Is(err, ErrForgedClickID) {
				t.Fatalf("Verify(%q, char %d changed) err = %v, want ErrForgedClickID", mangled, i, err)
			}
		}
	}
}

func TestVerifyMalformed(t *testing.T) {
	m := newTestMinter(t)
	id := m.New(time.Now())
	tests := []struct {
		name, id string
	}{
		{"empty", ""},
		{"short", id[:31]},
		{"long", id + "0"},
		{"uppercase", strings.ToUpper(id)},
		{"excluded letter i", id[:5] + "i" + id[6:]},
		{"excluded letter l", id[:5] + "l" + id[6:]},
		{"excluded letter o", id[:5] + "o" + id[6:]},
		{"excluded letter u", id[:5] + "u" + id[6:]},
		{"dash", id[:31] + "-"},
		{"nul", id[:31] + "\x00"},
		{"multibyte", id[:30] + "é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Verify(tt.id); !errors.Is(err, ErrMalformedClickID) || errors.Is(err, ErrForgedClickID) {
				t.Errorf("Verify(%q) err = %v, want ErrMalformedClickID", tt.id, err)
			}
			if _, err := ParseClickID(tt.id); !errors.Is(err, ErrMalformedClickID) {
				t.Errorf("ParseClickID(%q) err = %v, want ErrMalformedClickID", tt.id, err)
			}
			if LooksLikeClickID([]byte(tt.id)) {
				t.Errorf("LooksLikeClickID(%q) = true", tt.id)
			}
		})
	}
}

func TestVerifyRotation(t *testing.T) {
	old := newTestMinter(t, testSecret)
	next := newTestMinter(t, testSecret2)
	rolling := newTestMinter(t, testSecret2, testSecret) // new mints, old still verifies
	now := time.Now()
	oldID, nextID, rollingID := old.New(now), next.New(now), rolling.New(now)
	tests := []struct {
		name   string
		m      *Minter
		id     string
		forged bool
	}{
		{"old id, rolling minter", rolling, oldID, false},
		{"next id, rolling minter", rolling, nextID, false},
		{"rolling id, next minter", next, rollingID, false},
		{"rolling id, old minter", old, rollingID, true},
		{"old id, next minter", next, oldID, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.m.Verify(tt.id)
			if got := errors.Is(err, ErrForgedClickID); got != tt.forged || (!tt.forged && err != nil) {
				t.Errorf("Verify err = %v, want forged=%v", err, tt.forged)
			}
		})
	}
}

func TestMinterCopiesSecret(t *testing.T) {
	s := append([]byte(nil), testSecret...)
	m := newTestMinter(t, s)
	id := m.New(time.Now())
	s[0] ^= 0xff
	if _, err := m.Verify(id); err != nil {
		t.Errorf("Verify after caller changed its secret slice: %v", err)
	}
}

func TestAppendNewAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	m := newTestMinter(t)
	buf := make([]byte, 0, 64)
	now := time.Now()
	m.AppendNew(buf, now) // warm the pool
	if got := testing.AllocsPerRun(1000, func() { buf = m.AppendNew(buf[:0], now) }); got != 0 {
		t.Errorf("AppendNew allocs = %v, want 0", got)
	}
	id := string(buf)
	if got := testing.AllocsPerRun(1000, func() {
		if _, err := m.Verify(id); err != nil {
			t.Fatal(err)
		}
	}); got != 0 {
		t.Errorf("Verify allocs = %v, want 0", got)
	}
}

func TestMintConcurrent(t *testing.T) {
	m := newTestMinter(t, testSecret, testSecret2)
	const workers, each = 8, 500
	out := make(chan string, workers*each)
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			var buf [ClickIDLen]byte
			for i := 0; i < each; i++ {
				id := string(m.AppendNew(buf[:0], time.Now()))
				if _, err := m.Verify(id); err != nil {
					t.Errorf("Verify(%q): %v", id, err)
					return
				}
				out <- id
			}
		}()
	}
	for w := 0; w < workers; w++ {
		<-done
	}
	close(out)
	seen := map[string]bool{}
	for id := range out {
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func FuzzParseClickID(f *testing.F) {
	m := newTestMinter(f)
	for _, s := range []string{
		m.New(time.Unix(1_700_000_000, 0)), strings.Repeat("0", 32), strings.Repeat("z", 32),
		strings.Repeat("Z", 32), "", "0", strings.Repeat("u", 32), strings.Repeat("0", 31) + "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		ts, err := ParseClickID(id)
		looks := LooksLikeClickID([]byte(id))
		if looks != (err == nil) {
			t.Fatalf("ParseClickID(%q) err = %v but LooksLikeClickID = %v", id, err, looks)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedClickID) {
				t.Fatalf("ParseClickID(%q) err = %v, want ErrMalformedClickID", id, err)
			}
			if _, verr := m.Verify(id); !errors.Is(verr, ErrMalformedClickID) {
				t.Fatalf("Verify(%q) err = %v, want ErrMalformedClickID", id, verr)
			}
			return
		}
		// Valid syntax: the encoding is a bijection, so re-encoding gives id back.
		var raw [idRawLen]byte
		if err := decodeClickID(id, &raw); err != nil {
			t.Fatal(err)
		}
		if back := string(appendClickID(nil, &raw)); back != id {
			t.Fatalf("re-encode(%q) = %q", id, back)
		}
		if ms := ts.UnixMilli(); ms < 0 || ms > maxIDMillis {
			t.Fatalf("ParseClickID(%q) time %v out of range", id, ts)
		}
		if _, verr := m.Verify(id); verr != nil && !errors.Is(verr, ErrForgedClickID) {
			t.Fatalf("Verify(%q) err = %v, want nil or ErrForgedClickID", id, verr)
		}
	})
}

func BenchmarkMint(b *testing.B) {
	m := newTestMinter(b)
	buf := make([]byte, 0, ClickIDLen)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendNew(buf[:0], now)
	}
}

func BenchmarkVerify(b *testing.B) {
	m := newTestMinter(b, testSecret2, testSecret)
	id := newTestMinter(b, testSecret).New(time.Now()) // verified by the second secret
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Verify(id); err != nil {
			b.Fatal(err)
		}
	}
}
