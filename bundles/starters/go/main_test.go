package main

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestNameBasedIDsAreStable(t *testing.T) {
	a := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://airlock.invalid/"))
	b := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://airlock.invalid/"))
	require.Equal(t, a, b)
}
