! The module stencil.f90 uses: compiled first, its .mod file in the
! job's own module directory.
module kernels
  implicit none
contains
  subroutine smooth(a, b, n)
    integer, intent(in) :: n
    real(8), intent(in) :: a(n)
    real(8), intent(out) :: b(n)
    integer :: i
    b(1) = a(1)
    b(n) = a(n)
    do i = 2, n - 1
      b(i) = 0.25d0 * a(i-1) + 0.5d0 * a(i) + 0.25d0 * a(i+1)
    end do
  end subroutine smooth
end module kernels

