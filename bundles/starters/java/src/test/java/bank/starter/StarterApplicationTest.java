package bank.starter;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class StarterApplicationTest {
    @Test
    void greets() {
        assertThat(new StarterApplication().hello("alice")).isEqualTo("Hello, alice!");
    }
}
