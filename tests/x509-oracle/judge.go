package x509oracle

// The judge: peergate's policy core in a process (tests/x509-oracle/judge), fed JSON lines.
// Answers come in request order; the judge flushes every 64 ids and at the end of its input,
// so requests are written ahead of the answers (a queue of outstanding cases) and stdin is
// closed when the cases run out.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sync"
)

type judgeRequest struct {
	ID        uint64       `json:"id"`
	Config    pluginConfig `json:"config"`
	Leaf      string       `json:"leaf"`
	Authority string       `json:"authority"`
	Now       int64        `json:"now"`
}

type judgeAnswer struct {
	ID     uint64 `json:"id"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// judged is a case with both verdicts.
type judged struct {
	c      *oracleCase
	oracle verdict
	answer judgeAnswer
}

// runJudge feeds cases to one judge process and hands back each with its answer. It returns
// when in is closed and every answer is read; an error is the judge failing (its stderr).
func runJudge(path string, in <-chan judged, out chan<- judged) error {
	cmd := exec.Command(path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the judge %s: %w", path, err)
	}
	pending := make(chan judged, 4096)
	var writeErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pending)
		defer stdin.Close()
		if writeErr = writeRequests(stdin, in, pending); writeErr != nil {
			for range in { // keep the generators from blocking; the run fails anyway
			}
		}
	}()
	readErr := readAnswers(stdout, pending, out)
	if readErr != nil {
		_ = cmd.Process.Kill()
		for range pending { // let the writer finish
		}
	}
	wg.Wait()
	waitErr := cmd.Wait()
	switch {
	case waitErr != nil:
		return fmt.Errorf("the judge failed (%v): %s", waitErr, stderr.String())
	case readErr != nil:
		return fmt.Errorf("reading the judge: %v (stderr: %s)", readErr, stderr.String())
	case writeErr != nil:
		return fmt.Errorf("writing to the judge: %v (stderr: %s)", writeErr, stderr.String())
	}
	return nil
}

func writeRequests(stdin io.Writer, in <-chan judged, pending chan<- judged) error {
	w := bufio.NewWriter(stdin)
	enc := json.NewEncoder(w)
	var id uint64
	for j := range in {
		req := judgeRequest{ID: id, Config: j.c.config, Leaf: base64.StdEncoding.EncodeToString(j.c.leaf),
			Authority: "h.example", Now: j.c.now}
		j.answer.ID = id
		id++
		pending <- j
		if err := enc.Encode(req); err != nil {
			return err
		}
		if len(in) == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}

func readAnswers(stdout io.Reader, pending <-chan judged, out chan<- judged) error {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for j := range pending {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return err
			}
			return fmt.Errorf("the judge stopped answering at case %d", j.c.id)
		}
		want := j.answer.ID
		if err := json.Unmarshal(sc.Bytes(), &j.answer); err != nil {
			return fmt.Errorf("answer %q: %w", sc.Text(), err)
		}
		if j.answer.ID != want || j.answer.Reason == "" && j.answer.Error == "" {
			return fmt.Errorf("answer %q for request %d", sc.Text(), want)
		}
		out <- j
	}
	return nil
}
